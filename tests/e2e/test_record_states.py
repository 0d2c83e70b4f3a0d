"""Access rules 9–11 (docs/ARCHITECTURE.md) through the launcher-started gateway: a closed
record, a legacy record, a minor's record and its legal representatives."""

from __future__ import annotations

from datetime import UTC, datetime

from dmp.authz.v1 import principal_pb2
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.e2e.helpers import (
    C,
    R,
    S,
    consent,
    eventually,
    expect,
    grant,
    listed,
    new_record,
    patient_md,
    records,
    rid,
    rpps,
    until_refused,
    upload,
)
from tests.e2e.imports import import_record, records_settings
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request, identity

ATTEST = R.ConsentAttestation(consent_obtained=True, information_given=True)


async def test_rule9_closed_record_refuses_everything_but_the_patients_reactivation(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor")
    document = await upload(stack, "doctor", dossier)
    patient = records(stack.patient_channel())
    md = patient_md(stack, ins)
    await patient.CloseDossier(
        R.CloseDossierRequest(
            name=dossier, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()
        ),
        metadata=md,
        timeout=10,
    )
    doctor = records(stack.card_channel("doctor"))
    err = await until_refused(
        lambda: doctor.ListDocuments(R.ListDocumentsRequest(parent=dossier), timeout=10),
        S.FAILED_PRECONDITION,
    )
    assert err.details()
    closed = "DOSSIER_CLOSED"
    await expect(
        doctor.GetDocument(R.GetDocumentRequest(name=document.name)), S.FAILED_PRECONDITION, closed
    )
    await expect(upload(stack, "doctor", dossier), S.FAILED_PRECONDITION, closed)
    # The patient too: reading, managing access; and nobody else gets in, emergencies included.
    # (The patient's earlier GetDossier decision may sit in the gateway's cache until the
    # consent.changed event of the closure reaches it, a moment after consent itself knows.)
    err = await until_refused(
        lambda: patient.GetDossier(R.GetDossierRequest(name=dossier), metadata=md, timeout=10),
        S.FAILED_PRECONDITION,
    )
    assert error_info(err) is not None
    assert error_info(err).reason == closed  # type: ignore[union-attr]
    await expect(grant(stack, dossier, ins, "pharmacist"), S.FAILED_PRECONDITION, closed)
    regulateur = consent(stack.card_channel("regulateur"))
    await expect(
        regulateur.StartEmergencyAccess(
            C.StartEmergencyAccessRequest(
                parent=dossier,
                mode=principal_pb2.ACCESS_MODE_CENTRE_15,
                reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
                justification="Appel au 15 pour malaise",
                request_id=rid(),
            )
        ),
        S.FAILED_PRECONDITION,
        closed,
    )
    desk = records(stack.card_channel("desk"))
    await expect(desk.GetDossier(R.GetDossierRequest(name=dossier)), S.FAILED_PRECONDITION, closed)

    # The one thing allowed: the patient reactivates, and the record works again.
    reactivated = await patient.ReactivateDossier(
        R.ReactivateDossierRequest(name=dossier, request_id=rid()), metadata=md, timeout=10
    )
    assert reactivated.state == R.DOSSIER_STATE_ACTIVE
    names = await eventually(
        lambda: listed(stack, "doctor", dossier), retry_on=(S.FAILED_PRECONDITION,)
    )
    assert document.name in names


async def test_rule10_legacy_record_accepts_terms_before_anything_else(stack: LiveStack) -> None:
    ins = make_ins()
    dossier = await import_record(stack, create_request(ins), now=datetime.now(UTC), legacy=True)
    patient = records(stack.patient_channel())
    md = patient_md(stack, ins)
    pending = "TERMS_NOT_ACCEPTED"
    # NOT_FOUND until consent has projected the imported record, then terms first.
    err = await until_refused(
        lambda: patient.GetDossier(R.GetDossierRequest(name=dossier), metadata=md, timeout=10),
        S.FAILED_PRECONDITION,
    )
    await expect(
        patient.GetDossier(R.GetDossierRequest(name=dossier), metadata=md),
        S.FAILED_PRECONDITION,
        pending,
    )
    assert err.code() == S.FAILED_PRECONDITION
    await expect(grant(stack, dossier, ins, "doctor"), S.FAILED_PRECONDITION, pending)
    await expect(upload(stack, "doctor", dossier), S.FAILED_PRECONDITION, pending)
    # The patient accepts (not a CPAM desk on their behalf), and only the current version.
    desk = records(stack.card_channel("desk"))
    current = records_settings(stack).terms_version
    await expect(
        desk.AcceptTermsOfUse(
            R.AcceptTermsOfUseRequest(name=dossier, terms_version=current, request_id=rid())
        ),
        S.PERMISSION_DENIED,
    )
    await expect(
        patient.AcceptTermsOfUse(
            R.AcceptTermsOfUseRequest(name=dossier, terms_version="1999-01", request_id=rid()),
            metadata=md,
        ),
        S.FAILED_PRECONDITION,
        "TERMS_VERSION_NOT_CURRENT",
    )
    accepted = await patient.AcceptTermsOfUse(
        R.AcceptTermsOfUseRequest(name=dossier, terms_version=current, request_id=rid()),
        metadata=md,
        timeout=10,
    )
    assert accepted.state == R.DOSSIER_STATE_ACTIVE
    written = await eventually(
        lambda: upload(stack, "doctor", dossier), retry_on=(S.FAILED_PRECONDITION,)
    )
    seen = await patient.GetDocument(R.GetDocumentRequest(name=written.name), metadata=md)
    assert seen.name == written.name


def _minor_request(ins: str, parent_ins: str, born: tuple[int, int, int]) -> R.CreateDossierRequest:
    return create_request(
        ins,
        identity=identity(born),
        reps=[
            R.LegalRepresentative(
                role=R.REPRESENTATIVE_ROLE_PARENT,
                family_name="DURAND",
                given_name="Sophie",
                ins=parent_ins,
            )
        ],
    )


async def test_rule11_legal_representative_acts_for_a_minor(stack: LiveStack) -> None:
    child, parent = make_ins(year=16), make_ins(year=85, sex=2)
    year = datetime.now(UTC).year - 9
    dossier, _ = await new_record(stack, child, _minor_request(child, parent, (year, 3, 14)))
    representative = records(stack.patient_channel())
    md = patient_md(stack, parent)
    got = await representative.GetDossier(R.GetDossierRequest(name=dossier), metadata=md)
    assert [r.ins for r in got.legal_representatives] == [parent]
    assert got.legal_representatives[0].access_end_time.ToDatetime(UTC).year == year + 18

    # The parent manages access for the child: grants the paediatrician.
    rule = await consent(stack.patient_channel()).GrantAccess(
        C.GrantAccessRequest(parent=dossier, professional_rpps=rpps("doctor"), request_id=rid()),
        metadata=md,
        timeout=10,
    )
    assert rule.name
    visible = await upload(stack, "doctor", dossier)
    hidden = await upload(
        stack,
        "doctor",
        dossier,
        title="Consultation confidentielle",
        flags=(R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX,),
    )
    assert {visible.name, hidden.name} <= set(await listed(stack, "doctor", dossier))
    # Rule 6: a document hidden from the legal representatives.
    seen = await representative.ListDocuments(R.ListDocumentsRequest(parent=dossier), metadata=md)
    assert [d.name for d in seen.documents] == [visible.name]
    await expect(
        representative.GetDocument(R.GetDocumentRequest(name=hidden.name), metadata=md),
        S.NOT_FOUND,
    )
    # Someone else's parent is nobody here.
    stranger = patient_md(stack, make_ins(year=84))
    await expect(
        representative.GetDossier(R.GetDossierRequest(name=dossier), metadata=stranger),
        S.NOT_FOUND,
    )


async def test_rule11_representatives_access_ends_at_majority(stack: LiveStack) -> None:
    # Created in 2010 for a child born in 2000, imported as it stands today: the patient
    # came of age on 2018-01-01, so the parent's access has ended; the patient's has not.
    adult, parent = make_ins(year=0), make_ins(year=70, sex=2)
    created = datetime(2010, 6, 1, tzinfo=UTC)
    dossier = await import_record(stack, _minor_request(adult, parent, (2000, 1, 1)), now=created)
    patient = records(stack.patient_channel())
    own = patient_md(stack, adult)
    got = await eventually(
        lambda: patient.GetDossier(R.GetDossierRequest(name=dossier), metadata=own, timeout=10)
    )
    assert got.patient_ins == adult
    former = patient_md(stack, parent)
    await expect(
        patient.GetDossier(R.GetDossierRequest(name=dossier), metadata=former),
        S.PERMISSION_DENIED,
        "REPRESENTATIVE_ACCESS_ENDED",
    )
    await expect(
        consent(stack.patient_channel()).GrantAccess(
            C.GrantAccessRequest(
                parent=dossier, professional_rpps=rpps("doctor"), request_id=rid()
            ),
            metadata=former,
        ),
        S.PERMISSION_DENIED,
        "REPRESENTATIVE_ACCESS_ENDED",
    )
