"""The existence test by INS (CheckDossierExistence) and what a record's creation gives
(the creator's grant, the oppositions asked at creation), against consent with records'
events published on JetStream."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from dmp.records.v1 import events_pb2 as records_events
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from kit import ins as kit_ins
from kit.errors import error_info
from tests.consent.helpers import A, C, P, attending, block, emergency, grant, oppose, pro, rid
from tests.fixtures.consent import ConsentHarness, new_ins, new_rpps

R = records_pb2
EXISTENCE = "/dmp.consent.v1.ConsentService/CheckDossierExistence"
CARE, BDG, C15 = (
    C.ACCESS_PATH_CARE_CONTEXT_CONSENT,
    C.ACCESS_PATH_BRIS_DE_GLACE,
    C.ACCESS_PATH_CENTRE_15,
)


async def _check(h: ConsentHarness, principal: P.Principal, ins: str) -> C.DossierExistence:
    reply: C.DossierExistence = await h.call(
        "CheckDossierExistence",
        C.CheckDossierExistenceRequest(name=f"patients/{ins}/dossier"),
        principal,
    )
    return reply


async def _outcome(h: ConsentHarness, principal: P.Principal, ins: str) -> tuple[str, str]:
    try:
        await _check(h, principal, ins)
    except grpc.aio.AioRpcError as err:
        info = error_info(err)
        return err.code().name, info.reason if info else ""
    return "OK", ""


async def test_existence_by_ins_says_what_is_open_and_what_may_open(
    consent: ConsentHarness,
) -> None:
    h = consent
    dossier, ins = await h.create_record()
    doctor = pro("10", "SM53")
    first = await _check(h, doctor, ins)
    assert (first.exists, first.dossier, first.state) == (True, dossier, R.DOSSIER_STATE_ACTIVE)
    assert first.access_basis == C.ACCESS_BASIS_NONE
    assert list(first.available_paths) == [CARE, BDG]
    assert first.policy_version == h.app.matrix.version
    # Logged, without alerting anyone: the test opens nothing.
    entries = [e for e in await h.history(dossier) if e.method == EXISTENCE]
    assert [(e.name, e.decision, e.reason, e.principal.rpps) for e in entries] == [
        (first.access_log_entry, C.DECISION_ALLOWED, "EXISTENCE_TEST", doctor.rpps)
    ]
    assert not await h.wait_events(
        lambda s, m: s.endswith("access.recorded") and m.dossier == dossier, within_s=0.5
    )
    # A régulateur may also open centre 15.
    regulateur = pro("10", "SM53", roles=("regulateur",))
    assert list((await _check(h, regulateur, ins)).available_paths) == [CARE, BDG, C15]
    # Once a grant is open: which rule, no paths.
    rule = await grant(h, dossier, ins, doctor.rpps)
    granted = await _check(h, doctor, ins)
    assert (granted.access_basis, granted.access_rule, granted.access_mode) == (
        C.ACCESS_BASIS_GRANT,
        rule.name,
        P.ACCESS_MODE_NORMAL,
    )
    assert not granted.available_paths
    # An emergency access: its rule, mode and end.
    er = pro("10", "SM53")
    opened = await emergency(h, dossier, er)
    urgent = await _check(h, er, ins)
    assert (urgent.access_basis, urgent.access_rule, urgent.access_mode) == (
        C.ACCESS_BASIS_EMERGENCY_ACCESS,
        opened.name,
        P.ACCESS_MODE_BRIS_DE_GLACE,
    )
    assert urgent.access_expire_time == opened.expire_time
    # The médecin traitant.
    gp = pro("10", "SM54")
    await attending(h, dossier, ins, gp.rpps)
    assert (await _check(h, gp, ins)).access_basis == C.ACCESS_BASIS_ATTENDING_PHYSICIAN


async def test_oppositions_blocks_and_closed_records_open_nothing(consent: ConsentHarness) -> None:
    h = consent
    dossier, ins = await h.create_record()
    regulateur = pro("10", "SM53", roles=("regulateur",))
    await oppose(h, dossier, ins, bdg=True)
    assert list((await _check(h, regulateur, ins)).available_paths) == [CARE, C15]
    await oppose(h, dossier, ins, bdg=True, c15=True)
    assert list((await _check(h, regulateur, ins)).available_paths) == [CARE]
    blocked = pro("10", "SM53")
    await block(h, dossier, ins, blocked.rpps)
    seen = await _check(h, blocked, ins)
    assert (seen.exists, seen.access_basis, list(seen.available_paths)) == (
        True,
        C.ACCESS_BASIS_NONE,
        [],
    )
    await h.set_state(dossier, ins, R.DOSSIER_STATE_CLOSED)
    closed = await _check(h, regulateur, ins)
    assert (closed.exists, closed.state, list(closed.available_paths)) == (
        True,
        R.DOSSIER_STATE_CLOSED,
        [],
    )


async def test_a_missing_record_is_an_answer_and_is_not_logged(consent: ConsentHarness) -> None:
    missing = await _check(consent, pro("21"), new_ins())
    assert (missing.exists, missing.dossier, missing.access_log_entry) == (False, "", "")
    assert missing.state == R.DOSSIER_STATE_UNSPECIFIED


NO_STANDING: dict[str, P.Principal] = {
    "other patient": principals.patient(new_ins()),
    "administrative staff": principals.staff("admin-chu", ("administratif",)),
    "cpam desk": principals.staff("agent-cpam", ("guichet_amo",)),
    "amo feeder": principals.service("amo", ("alimentation_amo",)),
    "occupational role": pro("10", "SM53", roles=("medecin_du_travail",)),
    "occupational specialty": pro("10", "SM25"),
    "dental assistant": pro("31"),
}


@pytest.mark.parametrize("who", list(NO_STANDING))
async def test_callers_without_standing_learn_nothing(consent: ConsentHarness, who: str) -> None:
    h = consent
    _, ins = await h.create_record()
    principal = NO_STANDING[who]
    exists = await _outcome(h, principal, ins)
    missing = await _outcome(h, principal, new_ins())
    assert exists == missing, (exists, missing)
    assert exists[0] == "PERMISSION_DENIED"
    # The gateway's pre-check answers alike.
    for target in (ins, new_ins()):
        decided = await h.authorize(
            principal,
            A.ACTION_CHECK_EXISTENCE,
            resource_kind=A.RESOURCE_KIND_DOSSIER,
            method=EXISTENCE,
            patient_ins=target,
        )
        assert (decided.decision, decided.reason, decided.status_code) == (
            C.DECISION_DENIED,
            exists[1],
            7,
        )


async def test_the_gateway_pre_check_writes_nothing(consent: ConsentHarness) -> None:
    h = consent
    dossier, ins = await h.create_record()
    for target in (ins, new_ins()):
        decided = await h.authorize(
            pro("21"),
            A.ACTION_CHECK_EXISTENCE,
            resource_kind=A.RESOURCE_KIND_DOSSIER,
            method=EXISTENCE,
            patient_ins=target,
        )
        assert decided.decision == C.DECISION_ALLOWED
        assert decided.access_log_entry == ""
    assert await h.history(dossier) == []


async def test_bad_names_are_bad_input(consent: ConsentHarness) -> None:
    good = new_ins()
    wrong_key = kit_ins.normalize(good)[:13] + f"{(int(good[13:]) % 97) + 1:02d}"
    for name, reason in (
        ("patients/123/dossier", "INVALID_NAME"),
        ("dossier/abc", "INVALID_NAME"),
        (f"patients/{wrong_key}/dossier", "INS_KEY_MISMATCH"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await consent.call(
                "CheckDossierExistence", C.CheckDossierExistenceRequest(name=name), pro("10")
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(caught.value)
        assert info is not None
        assert info.reason == reason, (name, info)


async def test_only_the_insurers_agents_count_creations(consent: ConsentHarness) -> None:
    h = consent
    who: dict[str, tuple[P.Principal, int]] = {
        "desk": (principals.staff("agent-cpam", ("guichet_amo",)), C.DECISION_ALLOWED),
        "amo": (principals.service("amo", ("alimentation_amo",)), C.DECISION_DENIED),
        "admin": (principals.staff("admin", ("administratif",)), C.DECISION_DENIED),
        "doctor": (pro("10"), C.DECISION_DENIED),
        "conseil": (principals.staff("c", ("medecin_conseil",)), C.DECISION_DENIED),
    }
    for label, (principal, expected) in who.items():
        decided = await h.authorize(
            principal,
            A.ACTION_COUNT_CREATIONS,
            resource_kind=A.RESOURCE_KIND_DOSSIER,
            method="/dmp.records.v1.RecordsService/CountDossierCreations",
        )
        assert decided.decision == expected, label


# ------------------------------------------------------------- the creator keeps access


async def _created_by(
    h: ConsentHarness,
    creator: P.Principal,
    *,
    oppositions: R.EmergencyOppositions | None = None,
    event_id: str = "",
) -> tuple[str, str, records_events.DossierCreated]:
    ins = new_ins()
    event = records_events.DossierCreated(
        header=records_events.EventHeader(
            event_id=event_id or uuid.uuid4().hex, actor=creator.subject
        ),
        dossier=f"dossiers/{uuid.uuid4().hex}",
        patient_ins=ins,
        state=R.DOSSIER_STATE_ACTIVE,
        creation_channel=R.CREATION_CHANNEL_PROFESSIONAL,
        creating_professional=records_events.CreatingProfessional(
            rpps=creator.rpps,
            profession_code=creator.profession_code,
            institution_id="750000010",
        ),
        emergency_oppositions=oppositions,
    )
    await _publish(h, event)
    await h.wait_state(event.dossier, R.DOSSIER_STATE_ACTIVE)
    return event.dossier, ins, event


async def _publish(
    h: ConsentHarness, event: records_events.DossierCreated, msg_id: str = ""
) -> None:
    await h.js.publish(
        "dmp.records.dossier.created",
        event.SerializeToString(),
        headers={"Nats-Msg-Id": msg_id or event.header.event_id},
    )


async def _rules(h: ConsentHarness, dossier: str, ins: str) -> list[Any]:
    reply = await h.call(
        "ListAccessRules", C.ListAccessRulesRequest(parent=dossier), principals.patient(ins)
    )
    return list(reply.access_rules)


async def test_the_creator_keeps_access_logged_announced_and_revocable(
    consent: ConsentHarness,
) -> None:
    h = consent
    pharmacist = pro("21", rpps=new_rpps())
    dossier, ins, event = await _created_by(
        h, pharmacist, oppositions=R.EmergencyOppositions(oppose_centre_15=True)
    )
    read = await h.authorize(pharmacist, A.ACTION_READ, dossier, document_class_code="42")
    assert (read.decision, read.reason) == (C.DECISION_ALLOWED, "ACCESS_GRANTED")
    grants = [r for r in await _rules(h, dossier, ins) if r.kind == C.ACCESS_RULE_KIND_GRANT]
    assert [(r.professional_rpps, r.grant.source) for r in grants] == [
        (pharmacist.rpps, C.GRANT_SOURCE_RECORD_CREATION)
    ]
    assert grants[0].grant.care_context.institution_id == "750000010"
    # Logged as the CreateDossier decision, before the read.
    entries = [e for e in reversed(await h.history(dossier)) if e.principal.rpps == pharmacist.rpps]
    assert [(e.method.rpartition("/")[2], e.reason) for e in entries[:1]] == [
        ("CreateDossier", "RECORD_CREATOR")
    ]
    # Announced like a care-context grant: a change by someone else, and a first access.
    assert await h.wait_events(
        lambda s, m: s.endswith("changed") and m.access_rule == grants[0].name and not m.by_patient
    )
    assert await h.wait_events(
        lambda s, m: s.endswith("access.recorded") and m.dossier == dossier and m.first_access
    )
    # The existence test names it.
    seen = await _check(h, pharmacist, ins)
    assert (seen.access_basis, seen.access_rule) == (C.ACCESS_BASIS_RECORD_CREATION, grants[0].name)
    # The opposition asked at creation holds.
    regulateur = pro("10", "SM53", roles=("regulateur",))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await emergency(h, dossier, regulateur, P.ACCESS_MODE_CENTRE_15)
    assert error_info(caught.value).reason == "EMERGENCY_OPPOSED"  # type: ignore[union-attr]
    # A redelivered creation (a republish under another message id) adds nothing.
    log_size = len(await h.history(dossier))
    await _publish(h, event, msg_id=uuid.uuid4().hex)
    marker_dossier, _, _ = await _created_by(h, pro("21"))  # consumed after the republish
    assert marker_dossier
    assert (
        len([r for r in await _rules(h, dossier, ins) if r.kind == C.ACCESS_RULE_KIND_GRANT]) == 1
    )
    assert len(await h.history(dossier)) == log_size
    # The patient revokes it like any grant.
    await h.call(
        "RevokeAccess",
        C.RevokeAccessRequest(name=grants[0].name, request_id=rid()),
        principals.patient(ins),
    )
    refused = await h.authorize(pharmacist, A.ACTION_READ, dossier, document_class_code="42")
    assert refused.decision == C.DECISION_DENIED


async def test_a_desk_creation_gives_no_grant_but_keeps_the_oppositions(
    consent: ConsentHarness,
) -> None:
    h = consent
    ins = new_ins()
    event = records_events.DossierCreated(
        header=records_events.EventHeader(event_id=uuid.uuid4().hex, actor="agent-cpam"),
        dossier=f"dossiers/{uuid.uuid4().hex}",
        patient_ins=ins,
        state=R.DOSSIER_STATE_ACTIVE,
        creation_channel=R.CREATION_CHANNEL_CPAM_DESK,
        emergency_oppositions=R.EmergencyOppositions(oppose_bris_de_glace=True),
    )
    await _publish(h, event)
    await h.wait_state(event.dossier, R.DOSSIER_STATE_ACTIVE)
    kinds = [r.kind for r in await _rules(h, event.dossier, ins)]
    assert kinds == [C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES]
    assert list((await _check(h, pro("10"), ins)).available_paths) == [CARE]


async def test_a_patient_sets_their_own_contacts_before_any_record(
    consent: ConsentHarness,
) -> None:
    """So that a record a professional creates for them later is announced to them."""
    ins = new_ins()
    own = await consent.authorize(
        principals.patient(ins),
        A.ACTION_MANAGE_ACCOUNT,
        resource_kind=A.RESOURCE_KIND_CONTACT_PREFERENCES,
        method="/dmp.notify.v1.NotifyService/SetContactPreferences",
        patient_ins=ins,
    )
    assert (own.decision, own.reason) == (C.DECISION_ALLOWED, "PATIENT_SELF")
    other = await consent.authorize(
        principals.patient(ins),
        A.ACTION_MANAGE_ACCOUNT,
        resource_kind=A.RESOURCE_KIND_CONTACT_PREFERENCES,
        method="/dmp.notify.v1.NotifyService/SetContactPreferences",
        patient_ins=new_ins(),
    )
    assert (other.decision, other.reason, other.status_code) == (C.DECISION_DENIED, "NO_GRANT", 5)
