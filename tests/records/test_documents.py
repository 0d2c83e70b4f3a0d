"""Documents: metadata rules, formats, encryption at rest, versions, archive,
logical delete, visibility flags; every bad input writes nothing."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from pydantic import SecretStr
from sqlalchemy import event, select

from dmp.records.v1 import records_pb2
from services.records import crypto
from services.records.models import document_contents, documents
from tests.fixtures.records import RecordsCalls, patient, professional
from tests.records.helpers import JPEG, PDF, PNG, add_doc, doc, expect_error, new_dossier, rid

R = records_pb2
C = grpc.StatusCode


async def _counts(records: RecordsCalls) -> tuple[int, ...]:
    return (
        await records.count("documents"),
        await records.count("document_contents"),
        await records.count("outbox"),
        await records.count("processed_requests"),
    )


async def test_create_derives_class_and_author(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    given = doc(type_code="11488-4")
    given.class_code = "99"  # never trusted
    given.author.display_name = "Dr Marie Durand"
    created = await records.call(
        "CreateDocument",
        R.CreateDocumentRequest(parent=name, document=given, request_id=rid()),
        professional("10000000001"),
    )
    assert created.class_code == "10"
    assert created.author.rpps == "10000000001"
    assert created.author.kind == R.AUTHOR_KIND_PROFESSIONAL
    assert created.author.display_name == "Dr Marie Durand"
    assert created.sha256 == hashlib.sha256(given.content).hexdigest()
    assert created.size_bytes == len(given.content)
    assert created.status == R.DOCUMENT_STATUS_CURRENT
    assert created.version == 1
    assert not created.content
    full = await records.call(
        "GetDocument", R.GetDocumentRequest(name=created.name), professional()
    )
    assert full.content == given.content
    basic = await records.call(
        "GetDocument",
        R.GetDocumentRequest(name=created.name, view=R.DOCUMENT_VIEW_BASIC),
        professional(),
    )
    assert not basic.content


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        (R.DOCUMENT_FORMAT_PDF, PDF),
        (R.DOCUMENT_FORMAT_PNG, PNG),
        (R.DOCUMENT_FORMAT_JPEG, JPEG),
        # CDA: tests/records/test_cda.py, each sample in its own patient's record (issue 15).
    ],
)
async def test_each_format_is_accepted(records: RecordsCalls, fmt: int, content: bytes) -> None:
    name, _ = await new_dossier(records)
    created = await add_doc(records, name, content=content, fmt=fmt)
    assert created.format == fmt


def _bad_cases() -> list[tuple[str, dict[str, object], grpc.StatusCode, str]]:
    now = datetime.now(UTC)
    return [
        ("unknown type", {"type_code": "NOPE-1"}, C.INVALID_ARGUMENT, "UNKNOWN_TYPE_CODE"),
        (
            "fake pdf",
            {"fmt": R.DOCUMENT_FORMAT_PDF, "content": b"hello"},
            C.INVALID_ARGUMENT,
            "FORMAT_MISMATCH",
        ),
        (
            "fake png",
            {"fmt": R.DOCUMENT_FORMAT_PNG, "content": PDF},
            C.INVALID_ARGUMENT,
            "FORMAT_MISMATCH",
        ),
        (
            "fake jpeg",
            {"fmt": R.DOCUMENT_FORMAT_JPEG, "content": PNG},
            C.INVALID_ARGUMENT,
            "FORMAT_MISMATCH",
        ),
        (
            "non-CDA xml",
            {"fmt": R.DOCUMENT_FORMAT_CDA_XML, "content": b"<a>x</a>"},
            C.INVALID_ARGUMENT,
            "FORMAT_MISMATCH",
        ),
        (
            "xml entities",
            {
                "fmt": R.DOCUMENT_FORMAT_CDA_XML,
                "content": b'<!DOCTYPE d [<!ENTITY a "aaaa">]>'
                b'<ClinicalDocument xmlns="urn:hl7-org:v3">&a;</ClinicalDocument>',
            },
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",  # a DTD is refused outright by the CDA header check (issue 15)
        ),
        ("binary text", {"content": b"\xff\xfe\x00bad"}, C.INVALID_ARGUMENT, "FORMAT_MISMATCH"),
        (
            "oversized",
            {"content": b"a" * (256 * 1024 + 1)},
            C.RESOURCE_EXHAUSTED,
            "CONTENT_TOO_LARGE",
        ),
        ("empty content", {"content": b""}, C.INVALID_ARGUMENT, "CONTENT_EMPTY"),
        ("empty title", {"title": "   "}, C.INVALID_ARGUMENT, "TITLE_REQUIRED"),
        (
            "no format",
            {"fmt": R.DOCUMENT_FORMAT_UNSPECIFIED},
            C.INVALID_ARGUMENT,
            "FORMAT_REQUIRED",
        ),
        (
            "future start",
            {"start": now + timedelta(days=2)},
            C.INVALID_ARGUMENT,
            "SERVICE_TIME_IN_FUTURE",
        ),
        (
            "stop before start",
            {"start": now - timedelta(days=2), "stop": now - timedelta(days=3)},
            C.INVALID_ARGUMENT,
            "SERVICE_STOP_BEFORE_START",
        ),
        (
            "future stop",
            {"start": now - timedelta(days=2), "stop": now + timedelta(days=3)},
            C.INVALID_ARGUMENT,
            "SERVICE_TIME_IN_FUTURE",
        ),
    ]


@pytest.mark.parametrize(
    ("label", "kw", "code", "reason"), _bad_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_bad_document_writes_nothing(
    records: RecordsCalls, label: str, kw: dict[str, object], code: grpc.StatusCode, reason: str
) -> None:
    name, _ = await new_dossier(records)
    before = await _counts(records)
    await expect_error(add_doc(records, name, **kw), code, reason)
    assert await _counts(records) == before


async def test_hash_mismatch_and_unwritable_class(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    before = await _counts(records)
    bad = doc()
    bad.sha256 = "0" * 64
    await expect_error(
        records.call(
            "CreateDocument",
            R.CreateDocumentRequest(parent=name, document=bad, request_id=rid()),
            professional(),
        ),
        C.INVALID_ARGUMENT,
        "CONTENT_HASH_MISMATCH",
    )
    await expect_error(
        add_doc(records, name, professional(writable=("11",))),
        C.PERMISSION_DENIED,
        "CLASS_NOT_WRITABLE",
    )
    # A patient cannot deposit a class-10 report: their uploads are class 90.
    await expect_error(
        add_doc(records, name, patient(ins)), C.PERMISSION_DENIED, "CLASS_NOT_WRITABLE"
    )
    assert await _counts(records) == before


async def test_patient_uploads_land_in_class_90(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    photo = await add_doc(
        records,
        name,
        patient(ins),
        type_code="",
        title="Photo ordonnance",
        content=JPEG,
        fmt=R.DOCUMENT_FORMAT_JPEG,
    )
    assert photo.class_code == "90"
    assert photo.type_code == "EXPPAT_2"
    assert photo.author.kind == R.AUTHOR_KIND_PATIENT


async def test_duplicate_unique_id(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    first = doc()
    first.unique_id = f"1.2.250.1.{rid()[:8]}"
    await records.call(
        "CreateDocument",
        R.CreateDocumentRequest(parent=name, document=first, request_id=rid()),
        professional(),
    )
    before = await _counts(records)
    await expect_error(
        records.call(
            "CreateDocument",
            R.CreateDocumentRequest(parent=name, document=first, request_id=rid()),
            professional(),
        ),
        C.ALREADY_EXISTS,
        "DOCUMENT_ALREADY_EXISTS",
    )
    assert await _counts(records) == before


async def test_content_is_encrypted_at_rest(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    secret = b"Diagnostic confidentiel: hypertension arterielle severe, patient XYZZY-42."
    created = await add_doc(records, name, content=secret)
    async with records.app.db() as session:
        row = (
            await session.execute(
                select(documents.c.id, document_contents.c.sealed)
                .join(document_contents, document_contents.c.document_pk == documents.c.id)
                .where(documents.c.document_id == created.name.rsplit("/", 1)[1])
            )
        ).one()
    assert secret not in row.sealed
    assert b"XYZZY" not in row.sealed
    assert len(row.sealed) == len(secret) + 12 + 16  # nonce + tag: AES-GCM


async def test_wrong_key_fails_loudly(records: RecordsCalls) -> None:
    dek = crypto.new_data_key()
    keks = {"a": b"k" * 32, "b": b"j" * 32}
    wrapped = crypto.wrap(dek, "d1", "a", keks)
    with pytest.raises(crypto.KeyUnwrapError):
        crypto.unwrap(crypto.WrappedKey("a", wrapped.blob), "d1", {"a": b"x" * 32})
    with pytest.raises(crypto.KeyUnwrapError):
        crypto.unwrap(wrapped, "d2", keks)  # bound to its record
    sealed = crypto.seal(dek, b"text", "doc-1")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(crypto.new_data_key(), sealed, "doc-1")
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(dek, sealed, "doc-2")  # bound to its document
    # Through the service: a server whose KEK differs refuses, never returns garbage.
    name, _ = await new_dossier(records)
    created = await add_doc(records, name)
    settings = records.settings
    original = settings.records_keks
    try:
        settings.records_keks = {
            settings.records_kek_id: SecretStr(base64.b64encode(b"w" * 32).decode())
        }
        await expect_error(
            records.call("GetDocument", R.GetDocumentRequest(name=created.name), professional()),
            C.INTERNAL,
            "DATA_KEY_UNAVAILABLE",
        )
    finally:
        settings.records_keks = original
    got = await records.call("GetDocument", R.GetDocumentRequest(name=created.name), professional())
    assert got.content


async def test_replace_keeps_the_old_version(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    author = professional("10000000011")
    old = await add_doc(records, name, author, title="CR v1")
    new = await records.call(
        "ReplaceDocument",
        R.ReplaceDocumentRequest(name=old.name, document=doc(title="CR v2"), request_id=rid()),
        author,
    )
    assert new.version == 2
    assert new.replaces == old.name
    assert new.name != old.name
    again = await records.call("GetDocument", R.GetDocumentRequest(name=old.name), author)
    assert again.status == R.DOCUMENT_STATUS_DEPRECATED
    assert again.replaced_by == new.name
    assert again.content  # still retrievable by id
    await expect_error(
        records.call(
            "ReplaceDocument",
            R.ReplaceDocumentRequest(name=old.name, document=doc(), request_id=rid()),
            author,
        ),
        C.FAILED_PRECONDITION,
        "DOCUMENT_NOT_CURRENT",
    )
    await expect_error(
        records.call(
            "ReplaceDocument",
            R.ReplaceDocumentRequest(name=new.name, document=doc(), request_id=rid()),
            professional("10000000012"),
        ),
        C.PERMISSION_DENIED,
        "NOT_AUTHOR",
    )


async def test_delete_is_logical_and_author_only(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    author, other = professional("10000000021"), professional("10000000022")
    created = await add_doc(records, name, author)
    before = await _counts(records)
    await expect_error(
        records.call(
            "DeleteDocument", R.DeleteDocumentRequest(name=created.name, request_id=rid()), other
        ),
        C.PERMISSION_DENIED,
        "NOT_AUTHOR",
    )
    await expect_error(
        records.call(
            "DeleteDocument",
            R.DeleteDocumentRequest(name=created.name, request_id=rid()),
            patient(ins),
        ),
        C.PERMISSION_DENIED,
        "NOT_AUTHOR",
    )
    assert await _counts(records) == before
    deleted = await records.call(
        "DeleteDocument",
        R.DeleteDocumentRequest(name=created.name, reason="erreur", request_id=rid()),
        author,
    )
    assert deleted.status == R.DOCUMENT_STATUS_DELETED
    assert await records.count("documents") == before[0]  # logical: the row stays
    await expect_error(
        records.call("GetDocument", R.GetDocumentRequest(name=created.name), other), C.NOT_FOUND
    )
    assert (
        await records.call("GetDocument", R.GetDocumentRequest(name=created.name), author)
    ).status == R.DOCUMENT_STATUS_DELETED
    # Replacing a deleted document is refused, and writes nothing.
    before = await _counts(records)
    await expect_error(
        records.call(
            "ReplaceDocument",
            R.ReplaceDocumentRequest(name=created.name, document=doc(), request_id=rid()),
            author,
        ),
        C.FAILED_PRECONDITION,
        "DOCUMENT_DELETED",
    )
    assert await _counts(records) == before
    await expect_error(
        records.call(
            "DeleteDocument", R.DeleteDocumentRequest(name=created.name, request_id=rid()), author
        ),
        C.FAILED_PRECONDITION,
        "DOCUMENT_ALREADY_DELETED",
    )


async def test_archive(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    created = await add_doc(records, name)
    archived = await records.call(
        "ArchiveDocument",
        R.ArchiveDocumentRequest(name=created.name, request_id=rid()),
        patient(ins),
    )
    assert archived.status == R.DOCUMENT_STATUS_ARCHIVED
    assert archived.HasField("archive_time")
    listed = await records.call(
        "ListDocuments", R.ListDocumentsRequest(parent=name), professional()
    )
    assert created.name not in [d.name for d in listed.documents]
    flt = "status = ARCHIVED"
    listed = await records.call(
        "ListDocuments", R.ListDocumentsRequest(parent=name, filter=flt), professional()
    )
    assert [d.name for d in listed.documents] == [created.name]
    await expect_error(
        records.call(
            "ArchiveDocument",
            R.ArchiveDocumentRequest(name=created.name, request_id=rid()),
            patient(ins),
        ),
        C.FAILED_PRECONDITION,
        "DOCUMENT_NOT_CURRENT",
    )


async def test_get_document_is_one_statement_outside_a_transaction(records: RecordsCalls) -> None:
    """The read path of issue 18: the record, the document and its content in one joined
    statement, no BEGIN/COMMIT around it (and no pool pre-ping before it)."""
    name, _ = await new_dossier(records)
    created = await add_doc(records, name)
    engine = records.app.engine
    assert engine is not None
    sent: list[tuple[str, str]] = []  # (statement, isolation level of its connection)

    def on_execute(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "outbox" not in statement:  # the relay's polls are not the read's
            sent.append((statement, conn.get_execution_options().get("isolation_level", "")))

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        got = await records.call(
            "GetDocument", R.GetDocumentRequest(name=created.name), professional()
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    assert got.name == created.name
    assert got.content
    assert len(sent) == 1, sent
    assert sent[0][1] == "AUTOCOMMIT"  # no BEGIN / COMMIT around it
