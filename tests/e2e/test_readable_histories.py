"""Care history and access history read by humans (issue 15), through the launcher-started
gateway: professionals' names, professions and specialties from identity's directory instead
of bare ids, the establishment of a hospital stay; ids the directory does not know stay ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import grpc

from dmp.consent.v1 import consent_pb2
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from services.history_feed.synthetic import cip13
from tests.e2e.helpers import consent, eventually, grant, new_record, patient_md, records, rid, rpps
from tests.fixtures.stack import UNREGISTERED

H = history_pb2
C = consent_pb2
R = records_pb2
S = grpc.StatusCode
GP_LABEL = "Spécialiste en Médecine générale (SM)"  # SM53, the demo doctor's specialty
CHU_FINESS, CHU_NAME = "750100042", "CHU Paris Nord"


def _line(ins: str, care: date, line_id: str) -> H.ClaimLine:
    line = H.ClaimLine(line_id=line_id, patient_ins=ins, billed_amount_cents=500)
    line.care_date.CopyFrom(H.Date(year=care.year, month=care.month, day=care.day))
    return line


def _lines(ins: str, today: date, tag: str) -> list[H.ClaimLine]:
    # A drug prescribed by the demo doctor (directory), dispensed by the pharmacist.
    prescribed = _line(ins, today - timedelta(days=3), f"{tag}-drug")
    prescribed.drug.cip13 = cip13("340093006491")
    prescribed.drug.atc_code = "C09AA05"
    prescribed.drug.quantity = 1
    prescribed.prescriber.system = H.ACTOR_ID_SYSTEM_RPPS
    prescribed.prescriber.id = rpps("doctor")
    prescribed.performer.system = H.ACTOR_ID_SYSTEM_RPPS
    prescribed.performer.id = rpps("pharmacist")
    # An act by an RPPS the directory does not know, prescribed under an ADELI number.
    unknown = _line(ins, today - timedelta(days=5), f"{tag}-act")
    unknown.medical_act.coding_system = H.ACT_CODING_SYSTEM_NGAP
    unknown.medical_act.code = "AMI"
    unknown.medical_act.coefficient = 1.0
    unknown.medical_act.quantity = 1
    unknown.performer.system = H.ACTOR_ID_SYSTEM_RPPS
    unknown.performer.id = UNREGISTERED.rpps
    unknown.prescriber.system = H.ACTOR_ID_SYSTEM_ADELI
    unknown.prescriber.id = "751234567"
    # A hospital stay: the performer is the institution (FINESS), the prescriber the doctor.
    stay = _line(ins, today - timedelta(days=20), f"{tag}-stay")
    stay.hospital_stay.ghs_code = "0123"
    stay.hospital_stay.admission_date.CopyFrom(stay.care_date)
    stay.hospital_stay.institution_finess = CHU_FINESS
    stay.hospital_stay.institution_name = CHU_NAME
    stay.performer.system = H.ACTOR_ID_SYSTEM_FINESS
    stay.performer.id = CHU_FINESS
    stay.prescriber.system = H.ACTOR_ID_SYSTEM_RPPS
    stay.prescriber.id = rpps("doctor")
    return [prescribed, unknown, stay]


async def _directory_name(stack: LiveStack, card: str) -> str:
    stub = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("doctor"))
    pro = await stub.GetProfessional(
        identity_pb2.GetProfessionalRequest(name=f"professionals/{rpps(card)}"), timeout=10
    )
    return f"{pro.given_name} {pro.family_name}"


async def test_care_history_names_the_professionals_and_the_establishment(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    today = stack.clock.now().date()
    sent_lines = _lines(ins, today, f"READ-{rid()[:8]}")
    amo = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo"))

    async def batch() -> AsyncIterator[H.IngestClaimsRequest]:
        yield H.IngestClaimsRequest(lines=sent_lines, request_id=rid())

    sent = await amo.IngestClaims(batch(), timeout=15)
    assert sent.accepted_count == len(sent_lines), sent
    patient = history_pb2_grpc.HistoryFeedServiceStub(stack.patient_channel())
    md = patient_md(stack, ins)
    request = H.GetCareHistoryRequest(name=f"{dossier}/careHistory")

    async def materialized() -> H.GetCareHistoryResponse:
        reply: H.GetCareHistoryResponse = await patient.GetCareHistory(
            request, metadata=md, timeout=10
        )
        if len(reply.entries) < len(sent_lines):  # materialized from records' event
            raise grpc.aio.AioRpcError(S.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())
        return reply

    reply = await eventually(materialized)
    shown: dict[str, H.ClaimLine] = {}
    for entry in reply.entries:
        for line in entry.drug_group.lines if entry.HasField("drug_group") else [entry.line]:
            shown[line.line_id.rsplit("-", 1)[1]] = line
    doctor = await _directory_name(stack, "doctor")
    pharmacist = await _directory_name(stack, "pharmacist")

    drug = shown["drug"]  # inside its ATC class group
    assert drug.prescriber_display == H.ActorDisplay(
        display_name=doctor, profession_display="Médecin", specialty_display=GP_LABEL
    )
    assert drug.performer_display == H.ActorDisplay(
        display_name=pharmacist, profession_display="Pharmacien"
    )
    assert drug.prescriber.id == rpps("doctor")  # the ids are still there

    act = shown["act"]  # unknown ids stay ids, the read does not fail
    assert act.performer_display == H.ActorDisplay(display_name=UNREGISTERED.rpps)
    assert act.prescriber_display == H.ActorDisplay(display_name="751234567")

    stay = shown["stay"]  # the establishment, where there is one
    assert stay.performer_display == H.ActorDisplay(
        display_name=CHU_NAME, establishment_display=CHU_NAME
    )
    assert stay.prescriber_display.display_name == doctor
    assert stay.prescriber_display.establishment_display == CHU_NAME


async def test_access_history_names_professions_and_specialties(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    md = patient_md(stack, ins)
    for card in ("doctor", "pharmacist"):
        await grant(stack, dossier, ins, card)
        await eventually(
            lambda card=card: records(stack.card_channel(card)).ListDocuments(  # type: ignore[misc]
                R.ListDocumentsRequest(parent=dossier), timeout=10
            )
        )
    history = await consent(stack.patient_channel()).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=100), metadata=md, timeout=10
    )
    by_rpps = {e.principal.rpps: e.principal for e in history.entries if e.principal.rpps}
    doctor, pharmacist = by_rpps[rpps("doctor")], by_rpps[rpps("pharmacist")]
    assert doctor.display_name == await _directory_name(stack, "doctor")
    assert (doctor.profession_display, doctor.specialty_display) == ("Médecin", GP_LABEL)
    assert pharmacist.display_name == await _directory_name(stack, "pharmacist")
    assert (pharmacist.profession_display, pharmacist.specialty_display) == ("Pharmacien", "")
    # The patient's own entries carry no professional display.
    mine = [e.principal for e in history.entries if not e.principal.rpps]
    assert mine
    assert all(p.display_name == p.profession_display == "" for p in mine)
