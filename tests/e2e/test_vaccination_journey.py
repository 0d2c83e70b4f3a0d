"""Journey 6 of issue 15, through the launcher-started gateway: a nurse, who knows nothing but
the patient's INS, records a flu vaccination with its lot and booster date; the patient sees it
in their vaccination book, their access history names the nurse, and the insurer's line for
that vaccination in the care history links to the book's entry.

On the nurse's side everything goes by the INS (`patients/{ins}/dossier`): the existence
test, the patient's consent she attests during care (the access the matrix requires of a nurse
recording a vaccination), the vaccination itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import grpc

from dmp.authz.v1 import authz_pb2
from dmp.consent.v1 import consent_pb2
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from services.history_feed.synthetic import cip13
from tests.e2e.helpers import (
    consent,
    eventually,
    expect,
    new_record,
    patient_md,
    records,
    rid,
    rpps,
)

R = records_pb2
C = consent_pb2
A = authz_pb2
S = grpc.StatusCode
H = history_pb2
FLU = R.CodedConcept(code="J07BB02", display="Influenza, inactivé, virion fragmenté")
NURSE = "nurse"  # Julie Lambert, infirmière (tests/fixtures/stack.py)
FLU_CIP13 = cip13("340093008129")  # history_feed checks a CIP13's shape and key, not the list


def _date(d: date) -> R.Date:
    return R.Date(year=d.year, month=d.month, day=d.day)


def _flu(today: date, lot: str) -> R.Vaccination:
    booster = today + timedelta(days=365)
    return R.Vaccination(
        vaccine=FLU,
        target_diseases=["grippe saisonnière"],
        administration_date=_date(today),
        lot_number=lot,
        dose_number=1,
        booster_date=_date(booster),
    )


async def test_journey6_nurse_records_a_flu_vaccination_from_the_ins(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    by_ins = f"patients/{ins}/dossier"
    nurse = records(stack.card_channel(NURSE))
    nurse_consent = consent(stack.card_channel(NURSE))
    today = stack.clock.now().date()

    # The nurse knows the INS only. Without an access nothing is recorded (NO_GRANT, AIP-211).
    refused = R.CreateVaccinationRequest(
        parent=by_ins, vaccination=_flu(today, "LOT-REFUSED"), request_id=rid()
    )
    await expect(nurse.CreateVaccination(refused, timeout=10), S.NOT_FOUND)
    # The existence test: the record exists, no access yet, a care-context consent opens one.
    seen = await nurse_consent.CheckDossierExistence(
        C.CheckDossierExistenceRequest(name=by_ins), timeout=10
    )
    assert (seen.exists, seen.dossier) == (True, dossier)
    assert seen.access_basis == C.ACCESS_BASIS_NONE
    assert C.ACCESS_PATH_CARE_CONTEXT_CONSENT in seen.available_paths
    # The patient, in front of her, consents; she attests it, by INS.
    await nurse_consent.GrantAccess(
        C.GrantAccessRequest(
            parent=by_ins,
            professional_rpps=rpps(NURSE),
            care_context=C.CareContext(consent_attested=True),
            request_id=rid(),
        ),
        timeout=10,
    )
    # A booster date that does not follow the administration is refused, nothing written.
    early = _flu(today, "LOT-EARLY")
    early.booster_date.CopyFrom(_date(today))
    await expect(
        eventually(
            lambda: nurse.CreateVaccination(
                R.CreateVaccinationRequest(parent=by_ins, vaccination=early, request_id=rid()),
                timeout=10,
            )
        ),
        S.INVALID_ARGUMENT,
        "BOOSTER_BEFORE_ADMINISTRATION",
    )
    recorded = await nurse.CreateVaccination(
        R.CreateVaccinationRequest(
            parent=by_ins, vaccination=_flu(today, "FLU-2026-A17"), request_id=rid()
        ),
        timeout=10,
    )
    assert recorded.name.startswith(f"{dossier}/vaccinations/")
    assert recorded.professional.rpps == rpps(NURSE)
    assert recorded.professional.profession_code == "60"
    md = patient_md(stack, ins)
    patient_consent = consent(stack.patient_channel())

    # The patient sees it in their vaccination book: vaccine, lot, dates, the nurse.
    book = await records(stack.patient_channel()).ListVaccinations(
        R.ListVaccinationsRequest(parent=dossier), metadata=md, timeout=10
    )
    assert [v.name for v in book.vaccinations] == [recorded.name]
    entry = book.vaccinations[0]
    assert entry.vaccine.code == FLU.code
    assert entry.lot_number == "FLU-2026-A17"
    assert entry.administration_date == _date(today)
    assert entry.booster_date == _date(today + timedelta(days=365))
    assert entry.professional.rpps == rpps(NURSE)
    assert entry.provenance.author.rpps == rpps(NURSE)

    # The access history names the nurse (directory), with her profession, for the recording.
    history = await patient_consent.ListAccessHistory(
        C.ListAccessHistoryRequest(
            parent=dossier, filter=f'principal.rpps = "{rpps(NURSE)}"', page_size=50
        ),
        metadata=md,
        timeout=10,
    )
    writes = [
        e
        for e in history.entries
        if e.method.endswith("/CreateVaccination") and e.decision == C.DECISION_ALLOWED
    ]
    # The gateway may reuse one decision for both calls (the early booster and the recording).
    assert writes, [(e.method, e.reason) for e in history.entries]
    logged = writes[0]
    assert logged.principal.display_name == "Julie Lambert"
    assert logged.principal.profession_code == "60"
    assert logged.principal.profession_display == "Infirmier"
    assert logged.resource_kind == A.RESOURCE_KIND_VACCINATION
    assert logged.reason == "ACCESS_GRANTED"
    # The refusal before the grant is there too, under the same name.
    denied = [
        e
        for e in history.entries
        if e.method.endswith("/CreateVaccination") and e.decision == C.DECISION_DENIED
    ]
    assert denied
    assert all(e.principal.display_name == "Julie Lambert" for e in denied)


def _vaccine_line(ins: str, care: date, line_id: str) -> H.ClaimLine:
    line = H.ClaimLine(
        line_id=line_id, patient_ins=ins, billed_amount_cents=1100, reimbursed_amount_cents=1100
    )
    line.care_date.CopyFrom(H.Date(year=care.year, month=care.month, day=care.day))
    line.vaccine.cip13 = FLU_CIP13
    line.vaccine.atc_code = FLU.code
    line.vaccine.label = "VAXIGRIPTETRA SUSP INJ SRG 0,5ML"
    line.vaccine.quantity = 1
    line.performer.system = H.ACTOR_ID_SYSTEM_RPPS
    line.performer.id = rpps(NURSE)
    return line


async def test_journey6_the_insurers_vaccine_line_links_to_the_book(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    md = patient_md(stack, ins)
    await consent(stack.patient_channel()).GrantAccess(
        C.GrantAccessRequest(parent=dossier, professional_rpps=rpps(NURSE), request_id=rid()),
        metadata=md,
        timeout=10,
    )
    nurse = records(stack.card_channel(NURSE))
    today = stack.clock.now().date()
    recorded = await eventually(
        lambda: nurse.CreateVaccination(
            R.CreateVaccinationRequest(
                parent=dossier, vaccination=_flu(today, "FLU-2026-B02"), request_id=rid()
            ),
            timeout=10,
        )
    )
    # The AMO sends the vaccine it reimbursed that day, and one of another day (not in the book).
    tag = rid()[:8]
    matching = _vaccine_line(ins, today, f"VAC-{tag}-1")
    other_day = _vaccine_line(ins, today - timedelta(days=40), f"VAC-{tag}-2")
    amo = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo"))

    async def lines() -> AsyncIterator[H.IngestClaimsRequest]:
        yield H.IngestClaimsRequest(lines=[matching, other_day], request_id=rid())

    sent = await amo.IngestClaims(lines(), timeout=15)
    assert sent.accepted_count == 2, sent

    patient = history_pb2_grpc.HistoryFeedServiceStub(stack.patient_channel())
    request = H.GetCareHistoryRequest(name=f"{dossier}/careHistory", filter="kind = VACCINE")

    async def both() -> H.GetCareHistoryResponse:
        reply: H.GetCareHistoryResponse = await patient.GetCareHistory(
            request, metadata=md, timeout=10
        )
        if len(reply.entries) < 2:  # the record's history is materialized from an event
            raise grpc.aio.AioRpcError(S.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())
        return reply

    reply = await eventually(both)
    by_id = {e.line.line_id: e.line for e in reply.entries}
    assert by_id[matching.line_id].vaccination == recorded.name
    assert by_id[other_day.line_id].vaccination == ""
    # The performer reads as the nurse, from the directory.
    shown = by_id[matching.line_id].performer_display
    assert (shown.display_name, shown.profession_display) == ("Julie Lambert", "Infirmier")
    assert by_id[matching.line_id].performer.id == rpps(NURSE)  # the id is still there
    # The link opens the book's entry for the patient.
    book = await records(stack.patient_channel()).ListVaccinations(
        R.ListVaccinationsRequest(parent=dossier), metadata=md, timeout=10
    )
    assert by_id[matching.line_id].vaccination in {v.name for v in book.vaccinations}
