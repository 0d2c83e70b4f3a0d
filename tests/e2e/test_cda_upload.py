"""A CDA through the launcher-started gateway (issue 15): the AMO feeder deposits the CI-SIS
reimbursement-history sample declaring only its content, format and type (the edge decides a
service's write on the declared type, so the AMO names it); its patient reads it with the
header's title, period, practice setting, facility and author; the same document in another
patient's record is refused CDA_PATIENT_MISMATCH, the reason reaching the client."""

from __future__ import annotations

from datetime import UTC

import grpc

from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import expect, new_record, patient_md, records, rid, wait_known
from tests.records.cda_samples import SAMPLE_INS, SAMPLES, cda_document, sample
from tests.records.helpers import create_request

R = records_pb2
S = grpc.StatusCode
CNAM_HR = "CNAM-HR_2021.01.xml"


async def _sample_patients_record(stack: LiveStack) -> str:
    """The record of the samples' patient (one per INS on the shared stack: another test may
    have created it already)."""
    desk = records(stack.card_channel("desk"))
    try:
        created = await desk.CreateDossier(create_request(SAMPLE_INS), timeout=15)
    except grpc.aio.AioRpcError as err:
        if err.code() != S.ALREADY_EXISTS:
            raise
        known = await wait_known(stack, f"patients/{SAMPLE_INS}/dossier", SAMPLE_INS)
        return str(known.name)
    await wait_known(stack, created.name, SAMPLE_INS)
    return str(created.name)


async def test_amo_deposits_a_cda_by_its_header_and_never_into_another_patients_record(
    stack: LiveStack,
) -> None:
    expected = SAMPLES[CNAM_HR]
    amo = records(stack.card_channel("amo"))
    dossier = await _sample_patients_record(stack)
    assert await _sample_patients_record(stack) == dossier  # found again by INS, not duplicated
    created = await amo.CreateDocument(
        R.CreateDocumentRequest(
            parent=dossier,
            document=cda_document(sample(CNAM_HR), type_code="REMB"),
            request_id=rid(),
        ),
        timeout=15,
    )
    got = await records(stack.patient_channel()).GetDocument(
        R.GetDocumentRequest(name=created.name, view=R.DOCUMENT_VIEW_BASIC),
        metadata=patient_md(stack, SAMPLE_INS),
        timeout=10,
    )
    assert (got.type_code, got.class_code, got.title) == ("REMB", "60", expected.title)
    assert got.service_start_time.ToDatetime(tzinfo=UTC) == expected.start
    assert expected.stop is not None
    assert got.service_stop_time.ToDatetime(tzinfo=UTC) == expected.stop
    assert (got.practice_setting_code, got.facility_type_code) == ("AMO", "SA24")
    assert (got.author.kind, got.author.display_name) == (
        R.AUTHOR_KIND_INSURANCE,
        "Assurance Maladie",
    )

    other, other_ins = await new_record(stack)
    await expect(
        amo.CreateDocument(
            R.CreateDocumentRequest(
                parent=other,
                document=cda_document(sample(CNAM_HR), type_code="REMB"),
                request_id=rid(),
            ),
            timeout=15,
        ),
        S.FAILED_PRECONDITION,
        "CDA_PATIENT_MISMATCH",
    )
    listed = await records(stack.patient_channel()).ListDocuments(
        R.ListDocumentsRequest(parent=other), metadata=patient_md(stack, other_ins), timeout=10
    )
    assert list(listed.documents) == []
