"""Documents: create, replace, read, archive, delete, change visibility.

Content is sealed with the record's data key, bound to the document id. A
document the caller may not see is NOT_FOUND (AIP-211), whatever the verb.
Every write answers through `answers.document`: never more than the caller
may read back.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from services.records import answers, cda_upload, crypto, names, published, search
from services.records.access import (
    RecordContext,
    Role,
    admit,
    can_see,
    needs_representatives,
)
from services.records.document_checks import Prepared, prepare
from services.records.document_view import etag, flags_of, to_proto
from services.records.keys import data_key, open_content
from services.records.repository import documents as repo
from services.records.repository import dossiers
from services.records.repository.documents import FLAG_COLUMNS, NewDocument
from services.records.repository.rows import DocumentRow
from services.records.settings import RecordsSettings

R = records_pb2
P = principal_pb2


async def _insert(
    session: AsyncSession,
    record: RecordContext,
    prep: Prepared,
    settings: RecordsSettings,
    now: datetime,
    *,
    version: int = 1,
    replaces_id: str | None = None,
) -> DocumentRow:
    if prep.unique_id is not None and await repo.unique_id_taken(session, prep.unique_id):
        raise already_exists(
            "DOCUMENT_ALREADY_EXISTS", "A document with this unique id already exists."
        )
    document_id = names.new_id()
    invisible = R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in prep.flags
    delay = timedelta(days=settings.invisible_patient_release_days)
    author = prep.author.SerializeToString(deterministic=True)
    row = await repo.insert(
        session,
        NewDocument(
            document_id=document_id,
            dossier_pk=record.pk,
            unique_id=prep.unique_id,
            type_code=prep.type_code,
            class_code=prep.class_code,
            title=prep.title,
            author=author,
            author_rpps=prep.author.rpps,
            author_subject=record.caller.subject,
            submitter=record.caller.subject,
            service_start_time=prep.start,
            service_stop_time=prep.stop,
            sort_time=prep.start or now,
            practice_setting_code=prep.practice_setting_code,
            facility_type_code=prep.facility_type_code,
            format=prep.fmt,
            size_bytes=len(prep.content),
            sha256=prep.sha256,
            masque_ps=R.CONFIDENTIALITY_FLAG_MASQUE_PS in prep.flags,
            invisible_patient=invisible,
            invisible_representants=(
                R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX in prep.flags
            ),
            release_time=now + delay if invisible else None,
            status=R.DOCUMENT_STATUS_CURRENT,
            version=version,
            replaces_id=replaces_id,
            create_time=now,
            sealed=crypto.seal(data_key(record.row, settings), prep.content, document_id),
        ),
    )
    await search.index(
        session,
        row.id,
        record.pk,
        title=prep.title,
        type_code=prep.type_code,
        author=author,
        extracted=prep.extracted,
    )
    return row


async def _published(
    session: AsyncSession,
    verb: str,
    record: RecordContext,
    row: DocumentRow,
    now: datetime,
    *,
    replaces: str = "",
) -> None:
    await published.document_changed(
        session,
        verb,
        actor=record.caller.subject,
        now=now,
        dossier_id=record.dossier_id,
        document_id=row.document_id,
        class_code=row.class_code,
        invisible_to_patient=R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in flags_of(row, now),
        replaces=replaces,
    )


def _answer(
    record: RecordContext,
    row: DocumentRow,
    now: datetime,
    wrote: tuple[str, ...],
    set_flags: set[R.ConfidentialityFlag.ValueType] | None = None,
) -> R.Document:
    """A write's answer: no more than the caller may read (`services.records.answers`)."""
    full = to_proto(row, record.dossier_id, now)
    return answers.document(record.caller, full, row, now, wrote=wrote, set_flags=set_flags)


async def load(
    session: AsyncSession,
    record: RecordContext,
    document_id: str,
    now: datetime,
    *,
    for_update: bool,
) -> DocumentRow:
    """The document if the caller may see it; NOT_FOUND otherwise (AIP-211)."""
    row = await repo.find(session, record.pk, document_id, for_update=for_update)
    if row is None or not can_see(record.caller, row, now):
        raise not_found("NOT_FOUND", "Document not found.")
    return row


def _check_etag(given: str, row: DocumentRow) -> None:
    if given and given != etag(row):
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The document changed.")


async def create(
    session: AsyncSession,
    record: RecordContext,
    request: R.CreateDocumentRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Document:
    # Issue 15 hook: a CDA is checked against its header (patient, type, author) and its
    # omitted metadata filled from it before the usual rules (services/records/cda_upload.py).
    document = cda_upload.completed(record, request.document, settings)
    prep = prepare(record.caller, document, settings, now)
    row = await _insert(session, record, prep, settings, now)
    await _published(session, "added", record, row, now)
    return _answer(record, row, now, answers.NEW_VERSION)


async def read(  # noqa: PLR0917 - handler shape: session, caller, target, view, settings, now
    session: AsyncSession,
    principal: P.Principal,
    dossier_id: str,
    document_id: str,
    view: R.DocumentView.ValueType,
    settings: RecordsSettings,
    now: datetime,
) -> R.Document:
    """GetDocument in one statement (`repo.read_with_record`), with the answers and the
    order of `open_record` + `load`: unknown record, then the caller's role and the record's
    gates, then the document's visibility, then its content. The representatives are read
    (a second statement) only for a patient account that is not the record's patient."""
    found = await repo.read_with_record(session, dossier_id, document_id)
    if found is None:
        raise not_found("NOT_FOUND", "Record not found.")
    reps = (
        await dossiers.representatives_of(session, found.record.id)
        if needs_representatives(principal, found.record)
        else []
    )
    record = admit(found.record, reps, principal, now, terms_version=settings.terms_version)
    row = found.document
    if row is None or not can_see(record.caller, row, now):
        raise not_found("NOT_FOUND", "Document not found.")
    if view == R.DOCUMENT_VIEW_BASIC:
        return to_proto(row, record.dossier_id, now)
    if found.sealed is None:
        raise RuntimeError("document without content row")  # INTERNAL, as a failed read
    plain = open_content(data_key(record.row, settings), found.sealed, row.document_id)
    if hashlib.sha256(plain).hexdigest() != row.sha256:
        raise ServiceError(grpc.StatusCode.DATA_LOSS, "CONTENT_CORRUPTED", "Content is corrupted.")
    return to_proto(row, record.dossier_id, now, plain)


async def replace(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession,
    record: RecordContext,
    document_id: str,
    request: R.ReplaceDocumentRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Document:
    old = await load(session, record, document_id, now, for_update=True)
    if old.author_subject != record.caller.subject:
        raise permission_denied("NOT_AUTHOR", "Only the author replaces a document.")
    if old.status == R.DOCUMENT_STATUS_DELETED:
        raise failed_precondition("DOCUMENT_DELETED", "A deleted document cannot be replaced.")
    if old.status != R.DOCUMENT_STATUS_CURRENT:
        raise failed_precondition("DOCUMENT_NOT_CURRENT", "Only the current version is replaced.")
    _check_etag(request.etag, old)
    # Issue 15 hook: a CDA is checked against its header (patient, type, author) and its
    # omitted metadata filled from it before the usual rules (services/records/cda_upload.py).
    document = cda_upload.completed(record, request.document, settings)
    prep = prepare(record.caller, document, settings, now)
    new = await _insert(
        session, record, prep, settings, now, version=old.version + 1, replaces_id=old.document_id
    )
    await repo.change(
        session,
        old.id,
        status=R.DOCUMENT_STATUS_DEPRECATED,
        replaced_by_id=new.document_id,
        update_time=now,
    )
    replaced = names.document_name(record.dossier_id, old.document_id)
    await _published(session, "replaced", record, new, now, replaces=replaced)
    return _answer(record, new, now, answers.NEW_VERSION)


async def archive(
    session: AsyncSession,
    record: RecordContext,
    document_id: str,
    request: R.ArchiveDocumentRequest,
    now: datetime,
) -> R.Document:
    row = await load(session, record, document_id, now, for_update=True)
    if row.author_subject != record.caller.subject and record.caller.role is not Role.PATIENT:
        raise permission_denied("NOT_AUTHOR", "Only the author or the patient archives.")
    if row.status != R.DOCUMENT_STATUS_CURRENT:
        raise failed_precondition("DOCUMENT_NOT_CURRENT", "Only a current document is archived.")
    _check_etag(request.etag, row)
    new = await repo.change(
        session, row.id, status=R.DOCUMENT_STATUS_ARCHIVED, archive_time=now, update_time=now
    )
    return _answer(record, new, now, answers.ARCHIVED)


async def delete(
    session: AsyncSession,
    record: RecordContext,
    document_id: str,
    request: R.DeleteDocumentRequest,
    now: datetime,
) -> R.Document:
    row = await load(session, record, document_id, now, for_update=True)
    if row.author_subject != record.caller.subject:
        raise permission_denied("NOT_AUTHOR", "Only the author deletes a document.")
    if row.status == R.DOCUMENT_STATUS_DELETED:
        raise failed_precondition("DOCUMENT_ALREADY_DELETED", "The document is already deleted.")
    _check_etag(request.etag, row)
    new = await repo.change(
        session,
        row.id,
        status=R.DOCUMENT_STATUS_DELETED,
        delete_time=now,
        delete_reason=request.reason.strip()[:1000],
        update_time=now,
    )
    await _published(session, "deleted", record, new, now)
    return _answer(record, new, now, answers.DELETED)


async def update_visibility(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession,
    record: RecordContext,
    document_id: str,
    request: R.UpdateDocumentVisibilityRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Document:
    set_flags, clear_flags = set(request.set_flags), set(request.clear_flags)
    if not (set_flags | clear_flags).issubset(FLAG_COLUMNS):
        raise invalid_argument("INVALID_FLAG", "Unknown confidentiality flag.", "set_flags")
    if set_flags & clear_flags:
        raise invalid_argument(
            "FLAG_SET_AND_CLEARED", "A flag cannot be set and cleared at once.", "set_flags"
        )
    row = await load(session, record, document_id, now, for_update=True)
    caller = record.caller
    if row.author_subject != caller.subject:
        allowed = {R.CONFIDENTIALITY_FLAG_MASQUE_PS} if caller.acts_for_patient else set()
        if not (set_flags | clear_flags).issubset(allowed) or not (set_flags | clear_flags):
            raise permission_denied(
                "FLAG_CHANGE_NOT_ALLOWED", "The caller may not change these flags."
            )
    _check_etag(request.etag, row)
    values: dict[str, object] = {}
    for flag in set_flags:
        values[FLAG_COLUMNS[flag]] = True
    for flag in clear_flags:
        values[FLAG_COLUMNS[flag]] = False
    if R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in set_flags and not row.invisible_patient:
        values["release_time"] = now + timedelta(days=settings.invisible_patient_release_days)
    if R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in clear_flags:
        values["release_time"] = None
    if values:
        row = await repo.change(session, row.id, **values, update_time=now)
        await _published(session, "visibility_changed", record, row, now)
    return _answer(record, row, now, answers.VISIBILITY, set_flags)
