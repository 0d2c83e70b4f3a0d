"""Scope enforcement (rules 4-6, 11): records never returns or counts what the
signed scope excludes; masked, invisible-to-patient and invisible-to-
representatives documents; visibility changes and automatic release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from sqlalchemy import update

from dmp.records.v1 import records_pb2
from services.records.models import documents
from tests.fixtures.records import (
    RecordsCalls,
    admin_staff,
    desk,
    make_ins,
    patient,
    professional,
    representative,
    scope,
    unscoped_professional,
)
from tests.records.helpers import add_doc, create_request, expect_error, identity, rid

R = records_pb2
C = grpc.StatusCode
MASK = R.CONFIDENTIALITY_FLAG_MASQUE_PS
INV_PAT = R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT
INV_REP = R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX


async def _names(records: RecordsCalls, parent: str, who: object) -> tuple[set[str], int]:
    out = await records.call("ListDocuments", R.ListDocumentsRequest(parent=parent), who)
    return {d.name for d in out.documents}, out.total_size


async def _minor(records: RecordsCalls) -> tuple[str, str, str]:
    year = datetime.now(UTC).year - 8
    ins, parent_ins = make_ins(year=year % 100), make_ins()
    rep = R.LegalRepresentative(
        role=R.REPRESENTATIVE_ROLE_PARENT, family_name="X", given_name="Y", ins=parent_ins
    )
    d = await records.call(
        "CreateDossier", create_request(ins, identity=identity((year, 1, 1)), reps=[rep]), desk()
    )
    return d.name, ins, parent_ins


async def test_readable_classes_limit_lists_counts_and_reads(records: RecordsCalls) -> None:
    name, _, _ = await _minor(records)
    report = await add_doc(records, name)  # class 10
    prescription = await add_doc(records, name, type_code="57833-6", title="Ordonnance")  # 42
    optician = professional("10000000031", sc=scope(readable=("42",), writable=()))
    seen, total = await _names(records, name, optician)
    assert seen == {prescription.name}
    assert total == 1
    await expect_error(
        records.call("GetDocument", R.GetDocumentRequest(name=report.name), optician), C.NOT_FOUND
    )
    by_type = professional(
        "10000000032", sc=scope(readable=(), writable=(), readable_types=("11488-4",))
    )
    assert (await _names(records, name, by_type))[0] == {report.name}


async def test_no_scope_or_administrative_scope_sees_no_document(records: RecordsCalls) -> None:
    name, _, _ = await _minor(records)
    await add_doc(records, name)
    await expect_error(
        records.call("ListDocuments", R.ListDocumentsRequest(parent=name), unscoped_professional()),
        C.NOT_FOUND,
    )
    for who in (admin_staff(), desk()):
        assert await _names(records, name, who) == (set(), 0)
        got = await records.call("GetDossier", R.GetDossierRequest(name=name), who)
        assert got.name == name
    admin_pro = professional("10000000033", sc=scope(administrative_only=True))
    assert await _names(records, name, admin_pro) == (set(), 0)


async def test_excluded_roles_are_refused(records: RecordsCalls) -> None:
    name, _, _ = await _minor(records)
    doctor = professional("10000000034")
    doctor.roles.append("medecin_du_travail")
    await expect_error(
        records.call("ListDocuments", R.ListDocumentsRequest(parent=name), doctor),
        C.PERMISSION_DENIED,
        "ROLE_EXCLUDED",
    )


async def test_masked_documents(records: RecordsCalls) -> None:
    name, ins, parent_ins = await _minor(records)
    author = professional("10000000041")
    masked = await add_doc(records, name, author, flags=(MASK,))
    other = professional("10000000042")
    attending = professional("10000000043", sc=scope(masked_visible=True))
    assert masked.name not in (await _names(records, name, other))[0]
    assert (await _names(records, name, other))[1] == 0
    for who in (author, attending, patient(ins), representative(parent_ins)):
        assert masked.name in (await _names(records, name, who))[0]


async def test_patient_masks_and_unmasks(records: RecordsCalls) -> None:
    name, ins, _ = await _minor(records)
    created = await add_doc(records, name)
    other = professional("10000000044")
    me = patient(ins)
    await records.call(
        "UpdateDocumentVisibility",
        R.UpdateDocumentVisibilityRequest(name=created.name, set_flags=[MASK], request_id=rid()),
        me,
    )
    assert created.name not in (await _names(records, name, other))[0]
    await expect_error(
        records.call(
            "UpdateDocumentVisibility",
            R.UpdateDocumentVisibilityRequest(
                name=created.name, set_flags=[INV_REP], request_id=rid()
            ),
            me,
        ),
        C.PERMISSION_DENIED,
        "FLAG_CHANGE_NOT_ALLOWED",
    )
    await expect_error(
        records.call(
            "UpdateDocumentVisibility",
            R.UpdateDocumentVisibilityRequest(
                name=created.name, set_flags=[MASK], clear_flags=[MASK], request_id=rid()
            ),
            me,
        ),
        C.INVALID_ARGUMENT,
        "FLAG_SET_AND_CLEARED",
    )
    await records.call(
        "UpdateDocumentVisibility",
        R.UpdateDocumentVisibilityRequest(name=created.name, clear_flags=[MASK], request_id=rid()),
        me,
    )
    assert created.name in (await _names(records, name, other))[0]


async def test_invisible_to_patient_until_released(records: RecordsCalls) -> None:
    name, ins, parent_ins = await _minor(records)
    author = professional("10000000051")
    hidden = await add_doc(records, name, author, flags=(INV_PAT,))
    assert hidden.HasField("release_time")
    delay = hidden.release_time.ToDatetime(UTC) - hidden.create_time.ToDatetime(UTC)
    assert abs(delay - timedelta(days=records.settings.invisible_patient_release_days)) < timedelta(
        seconds=1
    )
    me = patient(ins)
    assert await _names(records, name, me) == (set(), 0)
    assert await _names(records, name, representative(parent_ins)) == (set(), 0)
    await expect_error(
        records.call("GetDocument", R.GetDocumentRequest(name=hidden.name), me), C.NOT_FOUND
    )
    assert hidden.name in (await _names(records, name, professional("10000000052")))[0]
    released = await records.call(
        "UpdateDocumentVisibility",
        R.UpdateDocumentVisibilityRequest(
            name=hidden.name, clear_flags=[INV_PAT], request_id=rid()
        ),
        author,
    )
    assert INV_PAT not in released.confidentiality_flags
    assert hidden.name in (await _names(records, name, me))[0]


async def test_automatic_release_after_the_delay(records: RecordsCalls) -> None:
    name, ins, _ = await _minor(records)
    hidden = await add_doc(records, name, flags=(INV_PAT,))
    me = patient(ins)
    assert await _names(records, name, me) == (set(), 0)
    async with records.app.db() as session, session.begin():
        await session.execute(
            update(documents)
            .where(documents.c.document_id == hidden.name.rsplit("/", 1)[1])
            .values(release_time=datetime.now(UTC) - timedelta(seconds=1))
        )
    seen, total = await _names(records, name, me)
    assert seen == {hidden.name}
    assert total == 1
    got = await records.call("GetDocument", R.GetDocumentRequest(name=hidden.name), me)
    assert INV_PAT not in got.confidentiality_flags


async def test_invisible_to_legal_representatives(records: RecordsCalls) -> None:
    name, ins, parent_ins = await _minor(records)
    hidden = await add_doc(records, name, flags=(INV_REP,))
    assert await _names(records, name, representative(parent_ins)) == (set(), 0)
    assert hidden.name in (await _names(records, name, patient(ins)))[0]
    # A representative who is not linked to this record learns nothing.
    await expect_error(
        records.call(
            "ListDocuments", R.ListDocumentsRequest(parent=name), representative(make_ins())
        ),
        C.NOT_FOUND,
    )


async def test_get_document_by_representatives(records: RecordsCalls) -> None:
    """GetDocument reads the representatives only for a patient account that is not the
    record's patient (its one-statement read): the linked parent reads, an unlinked one gets
    NOT_FOUND, and a document hidden from representatives stays hidden from the parent."""
    name, ins, parent_ins = await _minor(records)
    shown = await add_doc(records, name)
    hidden = await add_doc(records, name, flags=(INV_REP,))
    parent = representative(parent_ins)
    got = await records.call("GetDocument", R.GetDocumentRequest(name=shown.name), parent)
    assert got.name == shown.name
    assert got.content
    await expect_error(
        records.call("GetDocument", R.GetDocumentRequest(name=hidden.name), parent), C.NOT_FOUND
    )
    await expect_error(
        records.call(
            "GetDocument", R.GetDocumentRequest(name=shown.name), representative(make_ins())
        ),
        C.NOT_FOUND,
        "NOT_FOUND",
    )
    assert (
        await records.call("GetDocument", R.GetDocumentRequest(name=hidden.name), patient(ins))
    ).name == hidden.name


async def test_professional_cannot_change_flags_of_others_documents(records: RecordsCalls) -> None:
    name, _, _ = await _minor(records)
    created = await add_doc(records, name, professional("10000000061"))
    before = await records.count("outbox")
    await expect_error(
        records.call(
            "UpdateDocumentVisibility",
            R.UpdateDocumentVisibilityRequest(
                name=created.name, set_flags=[MASK], request_id=rid()
            ),
            professional("10000000062"),
        ),
        C.PERMISSION_DENIED,
        "FLAG_CHANGE_NOT_ALLOWED",
    )
    assert await records.count("outbox") == before
