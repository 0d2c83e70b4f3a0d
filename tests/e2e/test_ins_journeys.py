"""Issue 15, journeys 1-4: professionals reach the record from the patient's INS alone.

Through the launcher-started gateway with real cards and tokens; on the professional's
side each journey starts from nothing but the INS (`patients/{ins}/dossier`): the
existence test, then the call it names, then reads by the same INS name. The patient's
side (their account, their e-mails in the dev mail sink) is set up for real.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import grpc
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.consent.v1 import events_pb2 as consent_events
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from kit import clock
from kit import finess as kit_finess
from kit import nats as kit_nats
from tests.e2e.helpers import (
    consent,
    eventually,
    expect,
    mails_to,
    new_record,
    patient_md,
    records,
    register_patient,
    rid,
    rpps,
    until_refused,
    upload,
)
from tests.e2e.test_journey_hospital import DAVID, HOSPITAL
from tests.e2e.test_journey_hospital import _as_david as as_david
from tests.e2e.test_journey_hospital import _care_grant as care_grant
from tests.e2e.test_journey_hospital import _hospital as hospital_pair
from tests.e2e.test_patient_notices import notify_consumed, settled
from tests.fixtures.records import make_ins
from tests.history.lines import ago, drug
from tests.records.helpers import create_request
from tests.waits import until

R = records_pb2
C = consent_pb2
P = principal_pb2
ID = identity_pb2
S = grpc.StatusCode
URGENT = "URGENT"
JUSTIFICATION_15 = "Appel au 15 : douleur thoracique, antécédents nécessaires."
RULES_CHANGED = "Les règles d'accès à votre DMP ont changé"


async def _patient_with_account(stack: LiveStack) -> tuple[str, str]:
    """A patient with a real account and e-mail, no record yet: (ins, e-mail)."""
    ins = make_ins()
    email = f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"
    await register_patient(stack, ins, email)
    return ins, email


async def _contacts(stack: LiveStack, ins: str, email: str) -> None:
    """The patient's e-mail for notifications (before or after the record exists)."""
    await notify_pb2_grpc.NotifyServiceStub(stack.patient_channel()).SetContactPreferences(
        notify_pb2.SetContactPreferencesRequest(
            contact_preferences=notify_pb2.ContactPreferences(
                name=f"patients/{ins}/contactPreferences", email=email
            ),
            request_id=rid(),
        ),
        metadata=patient_md(stack, ins),
        timeout=10,
    )


def _by_ins(ins: str) -> str:
    return f"patients/{ins}/dossier"


async def _existence(stack: LiveStack, card: str, ins: str) -> C.DossierExistence:
    reply: C.DossierExistence = await consent(stack.card_channel(card)).CheckDossierExistence(
        C.CheckDossierExistenceRequest(name=_by_ins(ins)), timeout=10
    )
    return reply


async def _history(stack: LiveStack, dossier: str, ins: str, filt: str = "") -> list[Any]:
    reply = await consent(stack.patient_channel()).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=200, filter=filt),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    return list(reply.entries)


def _subjects(stack: LiveStack, email: str) -> list[str]:
    return [str(m.get("Subject", "")) for m in mails_to(stack.mail_dir, email)]


# ---------------------------------------------------------------- journey 1: Centre 15


async def test_journey1_centre15_opens_by_ins_reads_reports_and_summary(stack: LiveStack) -> None:
    ins, email = await _patient_with_account(stack)
    dossier, _ = await new_record(stack, ins)
    await _contacts(stack, ins, email)
    # The hospital's reports and the summary (VSM) are in the record.
    report = await upload(
        stack, "doctor", dossier, title="CR d'hospitalisation", type_code="34133-9"
    )
    summary = await upload(stack, "doctor", dossier, title="VSM", type_code="60591-5")
    # Every access event of this record from now on, as notify will consume them.
    nc = await nats.connect(stack.nats_url)
    stream = kit_nats.STREAMS["consent"].name
    try:
        watch = await nc.jetstream().pull_subscribe(
            "dmp.consent.access.recorded",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        rule = await _centre_15_reads(stack, ins, dossier, [report.name, summary.name])
        entries = await _history(stack, dossier, ins, f'emergency_access_rule = "{rule.name}"')
        last_seq = await _until_events(watch, dossier, len(entries))
        await watch.unsubscribe()
    finally:
        await nc.close()
    # Notify has handled the last of them: the patient got one alert for the whole session.
    await notify_consumed(stack, stream, "consent-access", last_seq)
    await settled(stack, ins)
    alerts = [s for s in _subjects(stack, email) if s.startswith(URGENT)]
    assert len(alerts) == 1, alerts
    # The access history shows the emergency mode with the régulateur's identity.
    entries = await _history(stack, dossier, ins, "mode = CENTRE_15")
    assert entries
    assert {e.principal.rpps for e in entries} == {rpps("regulateur")}
    assert all("regulateur" in e.principal.roles for e in entries)
    assert any("Roux" in e.principal.display_name for e in entries)
    started = [e for e in entries if e.method.endswith("/StartEmergencyAccess")]
    assert [e.justification for e in started] == [JUSTIFICATION_15]


async def _centre_15_reads(
    stack: LiveStack, ins: str, dossier: str, documents: list[str]
) -> C.AccessRule:
    """The régulateur, from the INS only: existence test, centre 15, reads; the rule."""
    seen = await _existence(stack, "regulateur", ins)
    assert (seen.exists, seen.dossier, seen.state) == (True, dossier, R.DOSSIER_STATE_ACTIVE)
    assert seen.access_basis == C.ACCESS_BASIS_NONE
    assert C.ACCESS_PATH_CENTRE_15 in seen.available_paths
    rule: C.AccessRule = await consent(stack.card_channel("regulateur")).StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=_by_ins(ins),
            mode=P.ACCESS_MODE_CENTRE_15,
            reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
            justification=JUSTIFICATION_15,
            request_id=rid(),
        ),
        timeout=10,
    )
    assert rule.name.startswith(dossier + "/accessRules/")
    open_now = await _existence(stack, "regulateur", ins)
    assert (open_now.access_basis, open_now.access_rule, open_now.access_mode) == (
        C.ACCESS_BASIS_EMERGENCY_ACCESS,
        rule.name,
        P.ACCESS_MODE_CENTRE_15,
    )
    regulateur = records(stack.card_channel("regulateur"))
    listed = await regulateur.ListDocuments(R.ListDocumentsRequest(parent=_by_ins(ins)), timeout=10)
    assert set(documents) <= {d.name for d in listed.documents}
    for name in documents:
        got = await regulateur.GetDocument(R.GetDocumentRequest(name=name), timeout=10)
        assert got.content
    return rule


async def _until_events(watch: Any, dossier: str, count: int) -> int:
    """The stream sequence of the last of `count` access events about `dossier`."""
    seqs: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(seqs) < count:
        assert loop.time() < deadline, f"{len(seqs)} access events of {count}"
        try:
            batch = await watch.fetch(10, timeout=1)
        except TimeoutError:
            continue
        for msg in batch:
            await msg.ack()
            if consent_events.AccessRecorded.FromString(msg.data).dossier == dossier:
                seqs.append(msg.metadata.sequence.stream)
    return max(seqs)


# ---------------------------------------------------------------- journey 2: bris de glace


async def test_journey2_er_doctor_breaks_the_glass_by_ins_unless_opposed(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await upload(stack, "doctor", dossier)
    seen = await _existence(stack, "doctor2", ins)
    assert C.ACCESS_PATH_BRIS_DE_GLACE in seen.available_paths
    assert C.ACCESS_PATH_CENTRE_15 not in seen.available_paths  # not a régulateur
    er = consent(stack.card_channel("doctor2"))
    justification = "Patient inconscient aux urgences, traitement en cours inconnu."
    request = C.StartEmergencyAccessRequest(
        parent=_by_ins(ins),
        mode=P.ACCESS_MODE_BRIS_DE_GLACE,
        reason=C.EMERGENCY_REASON_PATIENT_UNABLE_TO_CONSENT,
        justification=justification,
        request_id=rid(),
    )
    rule = await er.StartEmergencyAccess(request, timeout=10)
    assert rule.emergency_access.justification == justification
    listed = await records(stack.card_channel("doctor2")).ListDocuments(
        R.ListDocumentsRequest(parent=_by_ins(ins)), timeout=10
    )
    assert listed.documents
    logged = await _history(stack, dossier, ins, "mode = BRIS_DE_GLACE")
    assert {e.principal.rpps for e in logged} == {rpps("doctor2")}
    # Another patient opposed bris de glace: the test says so, the attempt is refused.
    opposed, opposed_ins = await new_record(stack)
    await consent(stack.patient_channel()).SetEmergencyPreferences(
        C.SetEmergencyPreferencesRequest(
            name=opposed,
            preferences=C.EmergencyPreferences(oppose_bris_de_glace=True),
            request_id=rid(),
        ),
        metadata=patient_md(stack, opposed_ins),
        timeout=10,
    )
    seen_opposed = await _existence(stack, "doctor2", opposed_ins)
    assert C.ACCESS_PATH_BRIS_DE_GLACE not in seen_opposed.available_paths
    await expect(
        er.StartEmergencyAccess(
            C.StartEmergencyAccessRequest(
                parent=_by_ins(opposed_ins),
                mode=P.ACCESS_MODE_BRIS_DE_GLACE,
                reason=C.EMERGENCY_REASON_PATIENT_UNABLE_TO_CONSENT,
                justification=justification,
                request_id=rid(),
            ),
            timeout=10,
        ),
        S.PERMISSION_DENIED,
        "EMERGENCY_OPPOSED",
    )
    await expect(
        records(stack.card_channel("doctor2")).ListDocuments(
            R.ListDocumentsRequest(parent=_by_ins(opposed_ins)), timeout=10
        ),
        S.NOT_FOUND,
    )


# ---------------------------------------------------------------- journey 3: GP first visit


async def test_journey3_gp_first_visit_grants_by_ins_reads_treatments_and_reimbursements(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    # What the record holds: a treatment the patient declared, a dispensed drug the AMO fed.
    profile = R.HealthProfile(name=f"{dossier}/healthProfile")
    profile.treatments.add(
        medication=R.CodedConcept(code="C09AA05", code_system="ATC", display="Ramipril"),
        dosage="5 mg par jour",
    )
    await records(stack.patient_channel()).UpdateHealthProfile(
        R.UpdateHealthProfileRequest(health_profile=profile, request_id=rid()),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    feed = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo"))
    call = feed.IngestClaims(timeout=15)
    await call.write(
        history_pb2.IngestClaimsRequest(
            lines=[drug(f"J3-{uuid.uuid4().hex[:12]}", ins, ago(days=20))], request_id=rid()
        )
    )
    await call.done_writing()
    assert (await call).accepted_count == 1
    gp = "doctor"
    seen = await _existence(stack, gp, ins)
    assert seen.access_basis == C.ACCESS_BASIS_NONE
    assert C.ACCESS_PATH_CARE_CONTEXT_CONSENT in seen.available_paths
    # Nothing is readable before the attested consent.
    gp_records = records(stack.card_channel(gp))
    await expect(
        gp_records.GetHealthProfile(
            R.GetHealthProfileRequest(name=f"{_by_ins(ins)}/healthProfile"), timeout=10
        ),
        S.NOT_FOUND,
    )
    rule = await consent(stack.card_channel(gp)).GrantAccess(
        C.GrantAccessRequest(
            parent=_by_ins(ins),
            professional_rpps=rpps(gp),
            care_context=C.CareContext(consent_attested=True, practice_setting_code="AMBULATOIRE"),
            request_id=rid(),
        ),
        timeout=10,
    )
    assert rule.grant.source == C.GRANT_SOURCE_CARE_CONTEXT
    assert (await _existence(stack, gp, ins)).access_rule == rule.name
    administrative = await gp_records.GetDossier(R.GetDossierRequest(name=_by_ins(ins)), timeout=10)
    assert administrative.name == dossier
    read = await gp_records.GetHealthProfile(
        R.GetHealthProfileRequest(name=f"{_by_ins(ins)}/healthProfile"), timeout=10
    )
    assert [t.medication.display for t in read.treatments] == ["Ramipril"]
    assert read.name == f"{dossier}/healthProfile"
    gp_history = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel(gp))

    async def drugs() -> list[Any]:
        got = await gp_history.GetCareHistory(
            history_pb2.GetCareHistoryRequest(
                name=f"{_by_ins(ins)}/careHistory", filter="kind = DRUG"
            ),
            timeout=10,
        )
        return list(got.entries)

    await until(lambda: _nonempty(drugs), "the drug line in the care history")
    assert await drugs()


async def _nonempty(read: Any) -> bool:
    return bool(await read())


# ---------------------------------------------------------------- journey 4: pharmacist


async def test_journey4_pharmacist_creates_keeps_access_patient_told_and_counted(
    stack: LiveStack,
) -> None:
    ins, email = await _patient_with_account(stack)
    await _contacts(stack, ins, email)  # before any record: their own INS
    body = f"75{uuid.uuid4().int % 10**6:06d}"
    finess = body + kit_finess.check_digit(body)
    start = clock.now() - timedelta(seconds=1)  # the platform's clock (tests move it)
    request = create_request(ins, "professional")
    request.professional.institution_id = finess
    request.emergency_oppositions.oppose_centre_15 = True
    pharmacist = records(stack.card_channel("pharmacist"))
    created = await pharmacist.CreateDossier(request, timeout=15)
    assert created.creation_channel == R.CREATION_CHANNEL_PROFESSIONAL
    # Keeps access, by the INS alone (once consent has seen the creation).
    await eventually(
        lambda: pharmacist.ListDocuments(R.ListDocumentsRequest(parent=_by_ins(ins)), timeout=10)
    )
    seen = await _existence(stack, "pharmacist", ins)
    assert (seen.exists, seen.dossier, seen.access_basis) == (
        True,
        created.name,
        C.ACCESS_BASIS_RECORD_CREATION,
    )
    # The opposition asked at the counter holds for the régulateur.
    assert (
        C.ACCESS_PATH_CENTRE_15 not in (await _existence(stack, "regulateur", ins)).available_paths
    )
    # Logged, and the patient is told like for a grant.
    entries = await _history(stack, created.name, ins, f'principal.rpps = "{rpps("pharmacist")}"')
    assert ("CreateDossier", "RECORD_CREATOR") in {
        (e.method.rpartition("/")[2], e.reason) for e in entries
    }
    await until(lambda: RULES_CHANGED in _subjects(stack, email), "the rules-changed e-mail")
    # Counted once for the pharmacy and for the pharmacist, by the insurer's agent.
    end = clock.now() + timedelta(seconds=1)
    counts_request = R.CountDossierCreationsRequest(institution_id=finess)
    counts_request.start_time.FromDatetime(start)
    counts_request.end_time.FromDatetime(end)
    desk = records(stack.card_channel("desk"))
    counts = await desk.CountDossierCreations(counts_request, timeout=10)
    assert [(i.institution_id, i.dossier_count) for i in counts.institutions] == [(finess, 1)]
    assert [(c.creator_rpps, c.dossier_count) for c in counts.creators] == [(rpps("pharmacist"), 1)]
    assert counts.total_count == 1
    # Nobody else counts; the AMO feeder never reads.
    for card in ("amo", "pharmacist", "admin"):
        await expect(
            records(stack.card_channel(card)).CountDossierCreations(counts_request, timeout=10),
            S.PERMISSION_DENIED,
        )
    # The patient revokes the creator's grant like any other.
    rules = await consent(stack.patient_channel()).ListAccessRules(
        C.ListAccessRulesRequest(parent=created.name, filter="kind = GRANT"),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    [creator_rule] = list(rules.access_rules)
    assert creator_rule.grant.source == C.GRANT_SOURCE_RECORD_CREATION
    await consent(stack.patient_channel()).RevokeAccess(
        C.RevokeAccessRequest(name=creator_rule.name, request_id=rid()),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    await until_refused(
        lambda: pharmacist.ListDocuments(R.ListDocumentsRequest(parent=_by_ins(ins)), timeout=10),
        S.NOT_FOUND,
    )


# ---------------------------------------------------------------- through an establishment


async def test_an_establishment_runs_the_existence_test_for_its_doctor(stack: LiveStack) -> None:
    """The "via" principal of issue 15's establishments needs nothing of its own here."""
    dossier, ins = await new_record(stack)
    pair = hospital_pair(stack)
    his_consent = consent(stack.card_channel(pair))
    seen = await his_consent.CheckDossierExistence(
        C.CheckDossierExistenceRequest(name=_by_ins(ins)), metadata=as_david(pair), timeout=15
    )
    assert (seen.exists, seen.dossier, seen.access_basis) == (
        True,
        dossier,
        C.ACCESS_BASIS_NONE,
    )
    assert C.ACCESS_PATH_CARE_CONTEXT_CONSENT in seen.available_paths
    rule = await care_grant(stack, pair, ins, as_david(pair), DAVID)
    granted = await his_consent.CheckDossierExistence(
        C.CheckDossierExistenceRequest(name=_by_ins(ins)), metadata=as_david(pair), timeout=15
    )
    assert (granted.access_basis, granted.access_rule) == (C.ACCESS_BASIS_GRANT, rule.name)
    tests = [
        e
        for e in await _history(stack, dossier, ins)
        if e.method.endswith("/CheckDossierExistence")
    ]
    assert {(e.principal.rpps, e.principal.establishment_finess) for e in tests} == {
        (DAVID, HOSPITAL.finess)
    }
    assert len(tests) == 2
