"""Advance directives (directives anticipées): a versioned singleton of the record.

Each change writes a new revision and keeps the others (the patient and their
doctors can see what was written when, and by whom). Consent decides who may
write them (rule 12: the patient side, or a médecin under the patient's grant
or as médecin traitant) and says so in the signed scope; records checks that
flag again, deny by default. Every revision is announced to the patient through
`dmp.records.advance_directives.changed`, which names no content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit import pagination
from kit.errors import ServiceError, invalid_argument, permission_denied
from services.records import crypto, names, published
from services.records.access import Caller, RecordContext, Role
from services.records.keys import data_key, open_content
from services.records.models import advance_directive_revisions
from services.records.profile import caller_author, require_read
from services.records.repository.rows import typed
from services.records.settings import RecordsSettings

R = records_pb2
t = advance_directive_revisions.c

#: The fields a revision holds, in update-mask spelling.
FIELDS = ("written", "summary", "document", "custodian", "written_date")
MAX_TEXT = 4000


def etag(revision: int) -> str:
    return f'W/"{revision}"'


def require_write(caller: Caller) -> None:
    """The patient side, or a professional consent marked as a writer of the directives."""
    scope = caller.scope
    if caller.acts_for_patient:
        return
    if caller.role is Role.PROFESSIONAL and scope is not None and scope.advance_directives_writable:
        return
    raise permission_denied(
        "ADVANCE_DIRECTIVES_NOT_WRITABLE",
        "Only the patient, a legal representative or a doctor the patient granted access "
        "writes the advance directives.",
    )


def _open(record: RecordContext, settings: RecordsSettings, seal_id: str, sealed: bytes) -> bytes:
    return open_content(data_key(record.row, settings), sealed, seal_id)


@dataclass(frozen=True, slots=True)
class Revision:
    revision: int
    seal_id: str
    sealed: bytes
    create_time: datetime


def _shown(record: RecordContext, settings: RecordsSettings, row: Revision) -> R.AdvanceDirectives:
    out = R.AdvanceDirectives.FromString(_open(record, settings, row.seal_id, row.sealed))
    out.ClearField("item_id")
    out.name = names.advance_directives_name(record.dossier_id)
    out.revision_id = str(row.revision)
    out.etag = etag(row.revision)
    out.revision_create_time.FromDatetime(row.create_time)
    return out


async def _newest(session: AsyncSession, dossier_pk: int) -> Revision | None:
    row = (
        await session.execute(
            select(advance_directive_revisions)
            .where(t.dossier_pk == dossier_pk)
            .order_by(t.revision.desc())
            .limit(1)
        )
    ).first()
    return typed(Revision, row) if row is not None else None


async def current(
    session: AsyncSession, record: RecordContext, settings: RecordsSettings
) -> R.AdvanceDirectives | None:
    """The newest revision, or None when never written (no permission check)."""
    row = await _newest(session, record.pk)
    return _shown(record, settings, row) if row is not None else None


async def get(
    session: AsyncSession, record: RecordContext, settings: RecordsSettings
) -> R.AdvanceDirectives:
    require_read(record.caller)
    found = await current(session, record, settings)
    return found or R.AdvanceDirectives(name=names.advance_directives_name(record.dossier_id))


def _mask(mask: field_mask_pb2.FieldMask) -> tuple[str, ...]:
    paths = list(mask.paths)
    if not paths or paths == ["*"]:
        return FIELDS
    unknown = [p for p in paths if p not in FIELDS]
    if unknown:
        raise invalid_argument(
            "INVALID_UPDATE_MASK",
            f"update_mask paths are fields of the advance directives ({', '.join(FIELDS)}) or *.",
            "update_mask",
        )
    return tuple(paths)


def _checked(given: R.AdvanceDirectives, dossier_id: str) -> None:
    for field in ("summary", "custodian"):
        if len(getattr(given, field)) > MAX_TEXT:
            raise invalid_argument(
                "INVALID_ITEM",
                f"`{field}` is at most {MAX_TEXT} characters.",
                f"advance_directives.{field}",
            )
    if given.document:
        document_dossier, _ = names.parse_document(given.document, "advance_directives.document")
        if document_dossier != dossier_id:
            raise invalid_argument(
                "INVALID_ITEM",
                "The document must be one of this record.",
                "advance_directives.document",
            )
    day = given.written_date
    if day.year or day.month or day.day:
        try:
            datetime(day.year, day.month or 1, day.day or 1)
        except ValueError as exc:
            raise invalid_argument(
                "INVALID_DATE", "The date is not valid.", "advance_directives.written_date"
            ) from exc


async def update(
    session: AsyncSession,
    record: RecordContext,
    request: R.UpdateAdvanceDirectivesRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.AdvanceDirectives:
    """A new revision: the masked fields from the request, the rest carried over."""
    caller = record.caller
    require_write(caller)
    paths = _mask(request.update_mask)
    given = request.advance_directives
    _checked(given, record.dossier_id)
    newest = await _newest(session, record.pk)
    revision = newest.revision if newest is not None else 0
    if request.etag and request.etag != etag(revision):
        raise ServiceError(
            grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The advance directives changed."
        )
    stored = R.AdvanceDirectives()
    author = caller_author(caller)
    if newest is not None:
        previous = _shown(record, settings, newest)
        for field in FIELDS:
            source = given if field in paths else previous
            _copy(stored, source, field)
        stored.provenance.author.CopyFrom(previous.provenance.author)
        stored.provenance.create_time.CopyFrom(previous.provenance.create_time)
    else:
        for field in paths:
            _copy(stored, given, field)
        stored.provenance.author.CopyFrom(author)
        stored.provenance.create_time.FromDatetime(now)
    stored.provenance.last_updated_by.CopyFrom(author)
    stored.provenance.update_time.FromDatetime(now)
    seal_id = names.new_id()
    revision += 1
    dek = data_key(record.row, settings)
    sealed = crypto.seal(dek, stored.SerializeToString(deterministic=True), seal_id)
    await session.execute(
        advance_directive_revisions.insert().values(
            dossier_pk=record.pk,
            revision=revision,
            seal_id=seal_id,
            sealed=sealed,
            create_time=now,
        )
    )
    await published.advance_directives_changed(
        session,
        actor=caller.subject,
        now=now,
        dossier_id=record.dossier_id,
        revision_id=str(revision),
        author_kind=author.kind,
    )
    return _shown(record, settings, Revision(revision, seal_id, sealed, now))


def _copy(target: R.AdvanceDirectives, source: R.AdvanceDirectives, field: str) -> None:
    if field == "written_date":
        target.written_date.CopyFrom(source.written_date)
    else:
        setattr(target, field, getattr(source, field))


async def list_revisions(
    session: AsyncSession,
    record: RecordContext,
    request: R.ListAdvanceDirectivesRevisionsRequest,
    tokens: pagination.PageTokens,
    settings: RecordsSettings,
) -> R.ListAdvanceDirectivesRevisionsResponse:
    """Newest first; the page token holds the last revision number shown."""
    require_read(record.caller)
    size = pagination.page_size(request.page_size, 20, 100)
    bound = pagination.request_fingerprint(request, record.caller.subject)
    position = tokens.read(request.page_token, bound)
    query = select(advance_directive_revisions).where(t.dossier_pk == record.pk)
    if position is not None:
        query = query.where(t.revision < position.integer("r"))
    rows = (await session.execute(query.order_by(t.revision.desc()).limit(size + 1))).all()
    out = R.ListAdvanceDirectivesRevisionsResponse()
    for row in rows[:size]:
        out.advance_directives.append(_shown(record, settings, typed(Revision, row)))
    if len(rows) > size:
        out.next_page_token = tokens.issue({"r": int(rows[size - 1].revision)}, bound)
    return out


async def revision_count(session: AsyncSession, dossier_pk: int) -> int:
    """Tests and the migration check: how many revisions a record holds."""
    found = await session.scalar(
        select(func.count())
        .select_from(advance_directive_revisions)
        .where(t.dossier_pk == dossier_pk)
    )
    return int(found or 0)
