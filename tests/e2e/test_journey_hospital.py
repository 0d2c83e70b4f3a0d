"""Journey 5 (issue 15): a hospital information system without a CPS card deposits a discharge
letter for its doctor, through the launcher-started gateway.

The demo hospital (Hôpital Européen Georges Pompidou, FINESS 750803447, registered by the
launcher with its staff) connects with its own certificate and asserts, per call, Dr Charles
DAVID (RPPS 01234567897, no card of his own), the author of the CI-SIS discharge-letter
sample. Knowing only the patient's INS, it records the patient's attested consent for the
doctor (care context, by INS), then deposits the letter (the sample written about this
patient); the patient reads it with the doctor's and the hospital's names and sees, in the
access history, the doctor "via" the hospital. The same letter about another patient is
refused CDA_PATIENT_MISMATCH and nothing enters the record.

CreateDocument still names the record by `dossiers/{id}` (the INS form of its parent is the
`ins` helper's change): the test reads that name from the grant the hospital made by INS.
"""

from __future__ import annotations

from datetime import UTC

import grpc

from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import records_pb2
from dmp_dev import assertions, pki
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import consent, expect, new_record, patient_md, records, rid
from tests.fixtures.records import make_ins
from tests.fixtures.stack import BIOLOGIST_RPPS, EXTRA_ESTABLISHMENTS
from tests.records.cda_samples import SAMPLE_INS, SAMPLES, cda_document, for_patient, sample

C = consent_pb2
R = records_pb2
S = grpc.StatusCode
LETTER = "LDL-SES_2022.01.xml"
HOSPITAL = pki.DEMO_ESTABLISHMENTS["hospital"]
DAVID = "01234567897"


def _establishment(stack: LiveStack, stem: str) -> tuple[bytes, bytes]:
    directory = stack.pki_dir / pki.ESTABLISHMENTS_DIR
    return (directory / f"{stem}.crt").read_bytes(), (directory / f"{stem}.key").read_bytes()


def _hospital(stack: LiveStack) -> tuple[bytes, bytes]:
    return _establishment(stack, "hospital")


async def _care_grant(
    stack: LiveStack,
    pair: tuple[bytes, bytes],
    ins: str,
    md: tuple[tuple[str, str], ...],
    rpps: str,
) -> C.AccessRule:
    """The patient's consent, attested by the establishment's professional, by INS alone."""
    rule: C.AccessRule = await consent(stack.card_channel(pair)).GrantAccess(
        C.GrantAccessRequest(
            parent=f"patients/{ins}/dossier",
            professional_rpps=rpps,
            care_context=C.CareContext(consent_attested=True),
            request_id=rid(),
        ),
        metadata=md,
        timeout=15,
    )
    return rule


def _as_david(pair: tuple[bytes, bytes]) -> tuple[tuple[str, str], ...]:
    """A fresh assertion per call, as the hospital system signs one per request."""
    token = assertions.user_assertion(
        *pair, rpps=DAVID, profession="10", specialty="SM27", amr=["pwd", "otp"]
    )
    return assertions.metadata(token)


async def test_hospital_deposits_a_discharge_letter_for_its_doctor_by_ins(
    stack: LiveStack,
) -> None:
    expected = SAMPLES[LETTER]
    dossier, ins = await new_record(stack)
    pair = _hospital(stack)
    his_consent = consent(stack.card_channel(pair))
    his_records = records(stack.card_channel(pair))

    # The patient, in the ward, agrees: the hospital records it for Dr David by INS alone.
    rule = await his_consent.GrantAccess(
        C.GrantAccessRequest(
            parent=f"patients/{ins}/dossier",
            professional_rpps=DAVID,
            care_context=C.CareContext(
                consent_attested=True,
                practice_setting_code="ETABLISSEMENT",
                institution_id=HOSPITAL.finess,
            ),
            request_id=rid(),
        ),
        metadata=_as_david(pair),
        timeout=15,
    )
    assert rule.name.startswith(f"{dossier}/")

    created = await his_records.CreateDocument(
        R.CreateDocumentRequest(
            parent=dossier,
            document=cda_document(for_patient(LETTER, ins), type_code=expected.type_code),
            request_id=rid(),
        ),
        metadata=_as_david(pair),
        timeout=15,
    )

    patient = records(stack.patient_channel())
    got = await patient.GetDocument(
        R.GetDocumentRequest(name=created.name, view=R.DOCUMENT_VIEW_BASIC),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    assert (got.type_code, got.class_code, got.title) == (
        expected.type_code,
        expected.class_code,
        expected.title,
    )
    assert got.service_start_time.ToDatetime(tzinfo=UTC) == expected.start
    author = got.author
    assert (author.kind, author.rpps, author.display_name) == (
        R.AUTHOR_KIND_PROFESSIONAL,
        DAVID,
        "Dr Charles DAVID",
    )
    assert (author.profession_code, author.specialty_code) == ("10", "SM27")
    assert (author.institution_id, author.institution_name) == (HOSPITAL.finess, HOSPITAL.name)

    history = await consent(stack.patient_channel()).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=100),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    via = [e for e in history.entries if e.principal.rpps == DAVID]
    assert via, [e.principal for e in history.entries]
    assert {(e.principal.establishment_finess, e.principal.establishment_name) for e in via} == {
        (HOSPITAL.finess, HOSPITAL.name)
    }
    assert any(e.method.endswith("/CreateDocument") for e in via)

    # The sample itself is about another patient: refused, nothing written.
    assert ins != SAMPLE_INS
    await expect(
        his_records.CreateDocument(
            R.CreateDocumentRequest(
                parent=dossier,
                document=cda_document(for_patient(LETTER, make_ins()), type_code="11490-0"),
                request_id=rid(),
            ),
            metadata=_as_david(pair),
            timeout=15,
        ),
        S.FAILED_PRECONDITION,
        "CDA_PATIENT_MISMATCH",
    )
    await expect(
        his_records.CreateDocument(
            R.CreateDocumentRequest(
                parent=dossier,
                document=cda_document(sample(LETTER), type_code="11490-0"),
                request_id=rid(),
            ),
            metadata=_as_david(pair),
            timeout=15,
        ),
        S.FAILED_PRECONDITION,
        "CDA_PATIENT_MISMATCH",
    )
    listed = await patient.ListDocuments(
        R.ListDocumentsRequest(parent=dossier), metadata=patient_md(stack, ins), timeout=10
    )
    assert [d.name for d in listed.documents] == [created.name]


async def test_a_laboratory_deposits_its_biologists_results(stack: LiveStack) -> None:
    """The same path for a laboratory (issue 15: "a lab's biologist deposits results, within the
    matrix"): the CI-SIS biology sample, written about this patient by the lab's biologist."""
    bio = "BIO-CR-BIO_2024.01_TSH_1.xml"
    lab = EXTRA_ESTABLISHMENTS["lab"]
    pair = _establishment(stack, "lab")
    dossier, ins = await new_record(stack)

    def as_biologist() -> tuple[tuple[str, str], ...]:
        token = assertions.user_assertion(
            *pair, rpps=BIOLOGIST_RPPS, profession="10", specialty="SM03", amr=["sc"]
        )
        return assertions.metadata(token)

    await _care_grant(stack, pair, ins, as_biologist(), BIOLOGIST_RPPS)
    # The sample's author (RPPS 01234534765, no valid key) becomes the lab's biologist.
    content = for_patient(bio, ins).replace(b"801234534765", f"8{BIOLOGIST_RPPS}".encode())
    created = await records(stack.card_channel(pair)).CreateDocument(
        R.CreateDocumentRequest(
            parent=dossier,
            document=cda_document(content, type_code="11502-2"),
            request_id=rid(),
        ),
        metadata=as_biologist(),
        timeout=15,
    )
    got = await records(stack.patient_channel()).GetDocument(
        R.GetDocumentRequest(name=created.name, view=R.DOCUMENT_VIEW_BASIC),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    assert (got.type_code, got.class_code) == ("11502-2", "10")
    assert (got.author.rpps, got.author.display_name) == (BIOLOGIST_RPPS, "Dr Marcel CAMPARINI")
    # The header names the sample's laboratory; the document names the one that deposited it.
    assert (got.author.institution_id, got.author.institution_name) == (lab.finess, lab.name)
