"""Patient choices and the events they publish (dmp.consent.changed, access.recorded)."""

from __future__ import annotations

import grpc

from dmp_dev.testing import principals
from tests.consent.helpers import (
    A,
    C,
    P,
    attending,
    block,
    emergency,
    grant,
    oppose,
    pro,
    rid,
    rpc_error,
)
from tests.fixtures.consent import ConsentHarness


def _changed(dossier: str):  # type: ignore[no-untyped-def]
    return lambda s, m: s == "dmp.consent.changed" and m.dossier == dossier and m.access_rule


def _recorded(dossier: str):  # type: ignore[no-untyped-def]
    return lambda s, m: s == "dmp.consent.access.recorded" and m.dossier == dossier


async def test_every_rule_change_publishes_consent_changed(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    doctor, other = pro("10"), pro("21")
    rules = [
        await grant(consent, dossier, ins, other.rpps),
        await block(consent, dossier, ins, other.rpps),
        await attending(consent, dossier, ins, doctor.rpps),
        await oppose(consent, dossier, ins, bdg=True),
    ]
    changed = await consent.wait_events(
        lambda s, m: _changed(dossier)(s, m) and m.access_rule == rules[-1].name
    )
    assert changed
    assert changed[0].by_patient
    names = {m.access_rule for m in await consent.wait_events(_changed(dossier))}
    assert {r.name for r in rules} <= names
    listed = await consent.call(
        "ListAccessRules", C.ListAccessRulesRequest(parent=dossier), principals.patient(ins)
    )
    kinds = {r.kind for r in listed.access_rules}
    assert kinds == {
        C.ACCESS_RULE_KIND_BLOCK,
        C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN,
        C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES,
    }  # the grant was revoked by the block
    blocks = await consent.call(
        "ListAccessRules",
        C.ListAccessRulesRequest(parent=dossier, filter="kind = BLOCK OR kind = GRANT"),
        principals.patient(ins),
    )
    assert [r.kind for r in blocks.access_rules] == [C.ACCESS_RULE_KIND_BLOCK]
    everything = await consent.call(
        "ListAccessRules",
        C.ListAccessRulesRequest(parent=dossier, show_inactive=True, page_size=2),
        principals.patient(ins),
    )
    assert len(everything.access_rules) == 2
    assert everything.next_page_token


async def test_first_access_notified_once(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    doctor = pro("10")
    await grant(consent, dossier, ins, doctor.rpps)
    first = await consent.authorize(doctor, A.ACTION_READ, dossier, document_class_code="10")
    second = await consent.authorize(doctor, A.ACTION_READ, dossier, document_class_code="10")
    assert C.OBLIGATION_NOTIFY_FIRST_ACCESS in first.obligations
    assert C.OBLIGATION_NOTIFY_FIRST_ACCESS not in second.obligations
    events = await consent.wait_events(_recorded(dossier))
    assert len(events) == 1
    assert events[0].first_access
    assert not events[0].emergency
    assert events[0].access_log_entry == first.access_log_entry
    assert events[0].principal_subject == doctor.rpps


async def test_care_context_attestation_is_logged_and_notified(consent: ConsentHarness) -> None:
    dossier, _ = await consent.create_record()
    nurse = pro("60")
    rule = await consent.call(
        "GrantAccess",
        C.GrantAccessRequest(
            parent=dossier,
            professional_rpps=nurse.rpps,
            care_context=C.CareContext(consent_attested=True, practice_setting_code="AMBULATOIRE"),
            request_id=rid(),
        ),
        nurse,
    )
    assert rule.grant.source == C.GRANT_SOURCE_CARE_CONTEXT
    assert rule.grant.care_context.HasField("attest_time")
    entries = await consent.history(dossier)
    assert entries[0].reason == "CARE_CONTEXT_ATTESTATION"
    recorded = await consent.wait_events(_recorded(dossier))
    assert recorded
    assert recorded[0].first_access
    changed = await consent.wait_events(_changed(dossier))
    assert changed
    assert not changed[0].by_patient


async def test_emergency_notified_at_once_and_on_every_use(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    regulateur = pro("10", roles=("regulateur",))
    rule = await emergency(
        consent,
        dossier,
        regulateur,
        P.ACCESS_MODE_CENTRE_15,
        reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
    )
    assert rule.kind == C.ACCESS_RULE_KIND_EMERGENCY_ACCESS
    read = await consent.authorize(regulateur, A.ACTION_READ, dossier, document_class_code="11")
    assert C.OBLIGATION_NOTIFY_EMERGENCY in read.obligations
    events = await consent.wait_events(
        lambda s, m: _recorded(dossier)(s, m) and m.access_log_entry == read.access_log_entry
    )
    assert events
    assert events[0].emergency
    assert events[0].mode == P.ACCESS_MODE_CENTRE_15
    all_recorded = await consent.wait_events(_recorded(dossier))
    assert len(all_recorded) == 2
    assert all(m.emergency for m in all_recorded)
    # The patient ends it early.
    revoked = await consent.call(
        "RevokeAccess",
        C.RevokeAccessRequest(name=rule.name, request_id=rid()),
        principals.patient(ins),
    )
    assert revoked.state == C.ACCESS_RULE_STATE_REVOKED
    after = await consent.authorize(regulateur, A.ACTION_READ, dossier, document_class_code="11")
    assert after.decision == C.DECISION_DENIED


async def test_emergency_refusals_are_logged(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    doctor, blocked = pro("10"), pro("10")
    await block(consent, dossier, ins, blocked.rpps)
    await oppose(consent, dossier, ins, bdg=True)
    assert await rpc_error(emergency(consent, dossier, doctor)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EMERGENCY_OPPOSED",
    )
    assert await rpc_error(emergency(consent, dossier, blocked)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PROFESSIONAL_BLOCKED",
    )
    assert await rpc_error(emergency(consent, dossier, doctor, P.ACCESS_MODE_CENTRE_15)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "REGULATEUR_ROLE_REQUIRED",
    )
    reasons = [e.reason for e in await consent.history(dossier)]
    assert reasons == ["REGULATEUR_ROLE_REQUIRED", "PROFESSIONAL_BLOCKED", "EMERGENCY_OPPOSED"]


async def test_unblock_and_attending_replacement(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    patient = principals.patient(ins)
    doctor, doctor2 = pro("10"), pro("10")
    rule = await block(consent, dossier, ins, doctor.rpps)
    assert await rpc_error(block(consent, dossier, ins, doctor.rpps)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "ALREADY_BLOCKED",
    )
    assert await rpc_error(attending(consent, dossier, ins, doctor.rpps)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROFESSIONAL_BLOCKED",
    )
    lifted = await consent.call(
        "UnblockProfessional",
        C.UnblockProfessionalRequest(name=rule.name, request_id=rid()),
        patient,
    )
    assert lifted.state == C.ACCESS_RULE_STATE_REVOKED
    first = await attending(consent, dossier, ins, doctor.rpps)
    await attending(consent, dossier, ins, doctor2.rpps)
    old = await consent.authorize(doctor, A.ACTION_READ, dossier, document_class_code="10")
    new = await consent.authorize(doctor2, A.ACTION_READ, dossier, document_class_code="10")
    assert (old.decision, new.reason) == (C.DECISION_DENIED, "ATTENDING_PHYSICIAN")
    assert await rpc_error(
        consent.call(
            "RevokeAccess", C.RevokeAccessRequest(name=first.name, request_id=rid()), patient
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "RULE_NOT_REVOCABLE")
    cleared = await consent.call(
        "SetAttendingPhysician",
        C.SetAttendingPhysicianRequest(name=dossier, request_id=rid()),
        patient,
    )
    assert cleared.state == C.ACCESS_RULE_STATE_REVOKED


async def test_professional_cannot_manage_choices(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    doctor = pro("10")
    await grant(consent, dossier, ins, doctor.rpps)
    request = C.BlockProfessionalRequest(
        parent=dossier, professional_rpps=pro().rpps, request_id=rid()
    )
    assert await rpc_error(consent.call("BlockProfessional", request, doctor)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ACTION_NOT_ALLOWED",
    )
    stranger = pro("10")
    assert await rpc_error(consent.call("BlockProfessional", request, stranger)) == (
        grpc.StatusCode.NOT_FOUND,
        "NO_GRANT",
    )


async def test_emergency_session_names_its_entries_and_events(consent: ConsentHarness) -> None:
    """The opening and every read under it name the EMERGENCY_ACCESS rule (the session): in
    the log (hashed, filterable) and in `access.recorded`; a grant-based read names none."""
    dossier, ins = await consent.create_record()
    regulateur = pro("10", roles=("regulateur",))
    rule = await emergency(
        consent,
        dossier,
        regulateur,
        P.ACCESS_MODE_CENTRE_15,
        reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
    )
    reads = [
        await consent.authorize(
            regulateur, A.ACTION_READ, dossier, document_class_code="11", request_id=rid()
        )
        for _ in range(3)
    ]
    doctor = pro("10")
    await grant(consent, dossier, ins, doctor.rpps)
    normal = await consent.authorize(doctor, A.ACTION_READ, dossier, document_class_code="11")
    # The last one published (same outbox, in order): every earlier one is out too.
    (first,) = await consent.wait_events(
        lambda s, m: _recorded(dossier)(s, m) and m.access_log_entry == normal.access_log_entry
    )
    assert (first.first_access, first.emergency, first.emergency_access_rule) == (True, False, "")
    events = await consent.wait_events(_recorded(dossier))
    emergency_events = [m for m in events if m.emergency]
    assert len(emergency_events) == 4
    assert {m.emergency_access_rule for m in emergency_events} == {rule.name}
    patient = principals.patient(ins)
    listed = await consent.call(
        "ListAccessHistory",
        C.ListAccessHistoryRequest(parent=dossier, filter=f'emergency_access_rule = "{rule.name}"'),
        patient,
    )
    assert {e.name for e in listed.entries} >= {r.access_log_entry for r in reads}
    assert len(listed.entries) == 4  # the opening and three reads
    assert {e.emergency_access_rule for e in listed.entries} == {rule.name}
    everything = await consent.call(
        "ListAccessHistory", C.ListAccessHistoryRequest(parent=dossier), patient
    )
    (by_grant,) = [e for e in everything.entries if e.name == normal.access_log_entry]
    assert by_grant.emergency_access_rule == ""
    verified = await consent.call(
        "VerifyAccessLog", C.VerifyAccessLogRequest(parent=dossier), patient
    )
    assert verified.ok
    for bad in (f'emergency_access_rule = "{rule.name}x!"', 'emergency_access_rule = "x"'):
        assert await rpc_error(
            consent.call(
                "ListAccessHistory", C.ListAccessHistoryRequest(parent=dossier, filter=bad), patient
            )
        ) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER")
