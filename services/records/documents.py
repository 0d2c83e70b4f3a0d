"""Documents: create, replace, read, archive, delete, visibility; list and search.

Metadata is validated before anything is written; the class code is derived
from the type code, never taken from the client; the author is the caller.
Content is sealed with the record's data key, bound to the document id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import events_pb2, records_pb2
from kit import codes
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from services.records import answers, crypto, names, pagination, search
from services.records import content as content_checks
from services.records.access import Caller, Role, can_see, visible_clause
from services.records.models import document_contents, documents
from services.records.settings import RecordsSettings
from services.records.store import Loaded, data_key, emit, header, open_content, to_dt, ts

R = records_pb2
P = principal_pb2
PATIENT_CLASS = "90"
PATIENT_DEFAULT_TYPE = "EXPPAT_2"
CLOCK_SKEW = timedelta(minutes=5)

FLAG_COLUMNS = {
    R.CONFIDENTIALITY_FLAG_MASQUE_PS: "masque_ps",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT: "invisible_patient",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX: "invisible_representants",
}
ORDERS = {
    "": ("sort_time", True),
    "service_start_time desc": ("sort_time", True),
    "service_start_time": ("sort_time", False),
    "create_time desc": ("create_time", True),
    "create_time": ("create_time", False),
}


def token_key(settings: RecordsSettings) -> bytes:
    kek = settings.kek_bytes()[settings.records_kek_id]
    return hashlib.sha256(b"dmp-records-page-token|" + kek).digest()


def author_display(author_bytes: bytes) -> str:
    author = R.Author.FromString(author_bytes)
    return " ".join(p for p in (author.display_name, author.institution_name) if p)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def flags_of(row: Any, now: datetime) -> list[R.ConfidentialityFlag.ValueType]:
    out: list[R.ConfidentialityFlag.ValueType] = []
    if row.masque_ps:
        out.append(R.CONFIDENTIALITY_FLAG_MASQUE_PS)
    released = row.release_time is not None and row.release_time <= now
    if row.invisible_patient and not released:
        out.append(R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT)
    if row.invisible_representants:
        out.append(R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX)
    return out


def to_proto(row: Any, dossier_id: str, now: datetime, content: bytes | None = None) -> Any:
    out = R.Document(
        name=names.document_name(dossier_id, row.document_id),
        unique_id=row.unique_id or "",
        type_code=row.type_code,
        class_code=row.class_code,
        title=row.title,
        author=R.Author.FromString(row.author),
        submitter=row.submitter,
        practice_setting_code=row.practice_setting_code,
        facility_type_code=row.facility_type_code,
        format=row.format,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        confidentiality_flags=flags_of(row, now),
        status=row.status,
        version=row.version,
        replaces=names.document_name(dossier_id, row.replaces_id) if row.replaces_id else "",
        replaced_by=(
            names.document_name(dossier_id, row.replaced_by_id) if row.replaced_by_id else ""
        ),
        etag=f'W/"{row.revision}"',
    )
    if content is not None:
        out.content = content
    ts(row.service_start_time, out.service_start_time)
    ts(row.service_stop_time, out.service_stop_time)
    if row.invisible_patient and row.release_time is not None and row.release_time > now:
        ts(row.release_time, out.release_time)
    ts(row.create_time, out.create_time)
    ts(row.update_time, out.update_time)
    ts(row.archive_time, out.archive_time)
    ts(row.delete_time, out.delete_time)
    return out


# ---------------------------------------------------------------------------
# Validation of a new document (create and replace)
# ---------------------------------------------------------------------------


@dataclass
class Prepared:
    type_code: str
    class_code: str
    title: str
    author: Any
    fmt: int
    content: bytes
    sha256: str
    extracted: str
    start: datetime | None
    stop: datetime | None
    flags: set[int]
    unique_id: str | None
    practice_setting_code: str
    facility_type_code: str


def _author(caller: Caller, given: Any) -> Any:
    principal = caller.principal
    author = R.Author()
    if caller.role is Role.PROFESSIONAL:
        if given.rpps and given.rpps != principal.rpps:
            raise invalid_argument(
                "AUTHOR_MISMATCH", "The author must be the caller.", "document.author.rpps"
            )
        author.kind = R.AUTHOR_KIND_PROFESSIONAL
        author.rpps = principal.rpps
        author.profession_code = principal.profession_code
        author.specialty_code = principal.specialty_code
        author.display_name = given.display_name
        author.institution_id = given.institution_id
        author.institution_name = given.institution_name
    elif caller.role is Role.PATIENT:
        author.kind = R.AUTHOR_KIND_PATIENT
        author.display_name = "Patient"
    elif caller.role is Role.REPRESENTATIVE:
        author.kind = R.AUTHOR_KIND_LEGAL_REPRESENTATIVE
        author.display_name = "Représentant légal"
    else:
        author.kind = R.AUTHOR_KIND_INSURANCE
        author.display_name = given.display_name or principal.subject
    return author


def prepare(  # noqa: PLR0912 - one check per metadata rule, in order
    caller: Caller, doc: Any, settings: RecordsSettings, now: datetime
) -> Prepared:
    type_code = doc.type_code.strip()
    if not type_code and caller.acts_for_patient:
        type_code = PATIENT_DEFAULT_TYPE
    if type_code not in codes.table("document_types"):
        raise invalid_argument(
            "UNKNOWN_TYPE_CODE", "The document type code is unknown.", "document.type_code"
        )
    class_code = codes.document_class_of(type_code)
    if caller.acts_for_patient and class_code != PATIENT_CLASS:
        raise permission_denied(
            "CLASS_NOT_WRITABLE", "Documents deposited by the patient are of class 90."
        )
    if not caller.may_write(class_code, type_code):
        raise permission_denied("CLASS_NOT_WRITABLE", "The caller may not write this class.")
    title = doc.title.strip()
    if not title:
        raise invalid_argument("TITLE_REQUIRED", "A title is required.", "document.title")
    if len(title) > 255:
        raise invalid_argument("TITLE_TOO_LONG", "The title is too long.", "document.title")
    if doc.format not in R.DocumentFormat.values() or doc.format == R.DOCUMENT_FORMAT_UNSPECIFIED:
        raise invalid_argument("FORMAT_REQUIRED", "The format is required.", "document.format")
    data = bytes(doc.content)
    if not data:
        raise invalid_argument("CONTENT_EMPTY", "The content is empty.", "document.content")
    if len(data) > settings.max_document_bytes:
        raise ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CONTENT_TOO_LARGE",
            f"The content exceeds {settings.max_document_bytes} bytes.",
        )
    digest = hashlib.sha256(data).hexdigest()
    if doc.sha256 and doc.sha256.lower() != digest:
        raise invalid_argument(
            "CONTENT_HASH_MISMATCH", "The SHA-256 does not match the content.", "document.sha256"
        )
    extracted = content_checks.check(doc.format, data)
    start = to_dt(doc.service_start_time) if doc.HasField("service_start_time") else None
    stop = to_dt(doc.service_stop_time) if doc.HasField("service_stop_time") else None
    limit = now + CLOCK_SKEW
    if (start is not None and start > limit) or (stop is not None and stop > limit):
        raise invalid_argument(
            "SERVICE_TIME_IN_FUTURE", "Service dates cannot be in the future.", "document"
        )
    if stop is not None and start is not None and stop < start:
        raise invalid_argument(
            "SERVICE_STOP_BEFORE_START",
            "The service stop time is before its start.",
            "document.service_stop_time",
        )
    if stop is not None and start is None:
        raise invalid_argument(
            "SERVICE_START_REQUIRED",
            "A stop time needs a start time.",
            "document.service_start_time",
        )
    flags = set(doc.confidentiality_flags)
    if not flags.issubset(FLAG_COLUMNS):
        raise invalid_argument(
            "INVALID_FLAG", "Unknown confidentiality flag.", "document.confidentiality_flags"
        )
    if caller.acts_for_patient and flags - {R.CONFIDENTIALITY_FLAG_MASQUE_PS}:
        raise permission_denied(
            "FLAG_CHANGE_NOT_ALLOWED", "The patient may only mask documents from professionals."
        )
    for code, table in (
        (doc.practice_setting_code, "practice_settings"),
        (doc.facility_type_code, "healthcare_facility_types"),
    ):
        if code and not codes.is_valid(table, code):
            raise invalid_argument("UNKNOWN_CODE", f"Unknown {table} code.", "document")
    unique_id = doc.unique_id.strip() or None
    if unique_id is not None and len(unique_id) > 128:
        raise invalid_argument("UNIQUE_ID_TOO_LONG", "The unique id is too long.", "document")
    return Prepared(
        type_code=type_code,
        class_code=class_code,
        title=title,
        author=_author(caller, doc.author),
        fmt=doc.format,
        content=data,
        sha256=digest,
        extracted=extracted,
        start=start,
        stop=stop,
        flags=flags,
        unique_id=unique_id,
        practice_setting_code=doc.practice_setting_code,
        facility_type_code=doc.facility_type_code,
    )


async def _insert(
    session: AsyncSession,
    loaded: Loaded,
    prep: Prepared,
    settings: RecordsSettings,
    now: datetime,
    *,
    version: int = 1,
    replaces_id: str | None = None,
) -> Any:
    if prep.unique_id is not None:
        taken = (
            await session.execute(
                select(documents.c.id).where(documents.c.unique_id == prep.unique_id)
            )
        ).first()
        if taken is not None:
            raise already_exists(
                "DOCUMENT_ALREADY_EXISTS", "A document with this unique id already exists."
            )
    document_id = names.new_id()
    invisible = R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in prep.flags
    delay = timedelta(days=settings.invisible_patient_release_days)
    pk = (
        await session.execute(
            documents.insert()
            .returning(documents.c.id)
            .values(
                document_id=document_id,
                dossier_pk=loaded.pk,
                unique_id=prep.unique_id,
                type_code=prep.type_code,
                class_code=prep.class_code,
                title=prep.title,
                author=prep.author.SerializeToString(deterministic=True),
                author_rpps=prep.author.rpps,
                author_subject=loaded.caller.subject,
                submitter=loaded.caller.subject,
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
                update_time=now,
                delete_reason="",
                revision=1,
            )
        )
    ).scalar_one()
    dek = data_key(loaded.row, settings)
    await session.execute(
        document_contents.insert().values(
            document_pk=pk, sealed=crypto.seal(dek, prep.content, document_id)
        )
    )
    body = search.index_body(
        prep.title, prep.type_code, author_display(prep.author.SerializeToString()), prep.extracted
    )
    await search.index(session, pk, loaded.pk, prep.title, body)
    return (await session.execute(select(documents).where(documents.c.id == pk))).one()


async def _event(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession, verb: str, loaded: Loaded, row: Any, now: datetime, replaces: str = ""
) -> None:
    event_id, head = header(loaded.caller.subject, now)
    await emit(
        session,
        f"dmp.records.document.{verb}",
        event_id,
        events_pb2.DocumentChanged(
            header=head,
            dossier=names.dossier_name(loaded.dossier_id),
            document=names.document_name(loaded.dossier_id, row.document_id),
            class_code=row.class_code,
            replaces=replaces,
            invisible_to_patient=R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in flags_of(row, now),
        ),
    )


async def create(
    session: AsyncSession,
    loaded: Loaded,
    request: Any,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    prep = prepare(loaded.caller, request.document, settings, now)
    row = await _insert(session, loaded, prep, settings, now)
    await _event(session, "added", loaded, row, now)
    return _answer(loaded, row, now, answers.NEW_VERSION)


async def load_document(
    session: AsyncSession, loaded: Loaded, document_id: str, now: datetime, *, for_update: bool
) -> Any:
    """The document if the caller may see it; NOT_FOUND otherwise (AIP-211)."""
    query = select(documents).where(
        documents.c.document_id == document_id, documents.c.dossier_pk == loaded.pk
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None or not can_see(loaded.caller, row, now):
        raise not_found("NOT_FOUND", "Document not found.")
    return row


def _check_etag(given: str, row: Any) -> None:
    if given and given != f'W/"{row.revision}"':
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The document changed.")


async def get(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession,
    loaded: Loaded,
    document_id: str,
    view: int,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    row = await load_document(session, loaded, document_id, now, for_update=False)
    if view == R.DOCUMENT_VIEW_BASIC:
        return to_proto(row, loaded.dossier_id, now)
    sealed = (
        await session.execute(
            select(document_contents.c.sealed).where(document_contents.c.document_pk == row.id)
        )
    ).scalar_one()
    plain = open_content(data_key(loaded.row, settings), sealed, row.document_id)
    if hashlib.sha256(plain).hexdigest() != row.sha256:
        raise ServiceError(grpc.StatusCode.DATA_LOSS, "CONTENT_CORRUPTED", "Content is corrupted.")
    return to_proto(row, loaded.dossier_id, now, plain)


async def replace(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession,
    loaded: Loaded,
    document_id: str,
    request: Any,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    old = await load_document(session, loaded, document_id, now, for_update=True)
    if old.author_subject != loaded.caller.subject:
        raise permission_denied("NOT_AUTHOR", "Only the author replaces a document.")
    if old.status == R.DOCUMENT_STATUS_DELETED:
        raise failed_precondition("DOCUMENT_DELETED", "A deleted document cannot be replaced.")
    if old.status != R.DOCUMENT_STATUS_CURRENT:
        raise failed_precondition("DOCUMENT_NOT_CURRENT", "Only the current version is replaced.")
    _check_etag(request.etag, old)
    prep = prepare(loaded.caller, request.document, settings, now)
    new = await _insert(
        session, loaded, prep, settings, now, version=old.version + 1, replaces_id=old.document_id
    )
    await session.execute(
        update(documents)
        .where(documents.c.id == old.id)
        .values(
            status=R.DOCUMENT_STATUS_DEPRECATED,
            replaced_by_id=new.document_id,
            update_time=now,
            revision=documents.c.revision + 1,
        )
    )
    await _event(
        session,
        "replaced",
        loaded,
        new,
        now,
        names.document_name(loaded.dossier_id, old.document_id),
    )
    return _answer(loaded, new, now, answers.NEW_VERSION)


async def _reload(session: AsyncSession, pk: int) -> Any:
    return (await session.execute(select(documents).where(documents.c.id == pk))).one()


def _answer(
    loaded: Loaded,
    row: Any,
    now: datetime,
    wrote: tuple[str, ...],
    set_flags: set[int] | None = None,
) -> Any:
    """A write's answer: no more than the caller may read (`services.records.answers`)."""
    full = to_proto(row, loaded.dossier_id, now)
    return answers.document(loaded.caller, full, row, now, wrote=wrote, set_flags=set_flags)


async def archive(
    session: AsyncSession, loaded: Loaded, document_id: str, request: Any, now: datetime
) -> Any:
    row = await load_document(session, loaded, document_id, now, for_update=True)
    if row.author_subject != loaded.caller.subject and loaded.caller.role is not Role.PATIENT:
        raise permission_denied("NOT_AUTHOR", "Only the author or the patient archives.")
    if row.status != R.DOCUMENT_STATUS_CURRENT:
        raise failed_precondition("DOCUMENT_NOT_CURRENT", "Only a current document is archived.")
    _check_etag(request.etag, row)
    await session.execute(
        update(documents)
        .where(documents.c.id == row.id)
        .values(
            status=R.DOCUMENT_STATUS_ARCHIVED,
            archive_time=now,
            update_time=now,
            revision=documents.c.revision + 1,
        )
    )
    return _answer(loaded, await _reload(session, row.id), now, answers.ARCHIVED)


async def delete(
    session: AsyncSession, loaded: Loaded, document_id: str, request: Any, now: datetime
) -> Any:
    row = await load_document(session, loaded, document_id, now, for_update=True)
    if row.author_subject != loaded.caller.subject:
        raise permission_denied("NOT_AUTHOR", "Only the author deletes a document.")
    if row.status == R.DOCUMENT_STATUS_DELETED:
        raise failed_precondition("DOCUMENT_ALREADY_DELETED", "The document is already deleted.")
    _check_etag(request.etag, row)
    await session.execute(
        update(documents)
        .where(documents.c.id == row.id)
        .values(
            status=R.DOCUMENT_STATUS_DELETED,
            delete_time=now,
            delete_reason=request.reason.strip()[:1000],
            update_time=now,
            revision=documents.c.revision + 1,
        )
    )
    new = await _reload(session, row.id)
    await _event(session, "deleted", loaded, new, now)
    return _answer(loaded, new, now, answers.DELETED)


async def update_visibility(  # noqa: PLR0917 - handler shape: session, record, target, request, settings, now
    session: AsyncSession,
    loaded: Loaded,
    document_id: str,
    request: Any,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    set_flags, clear_flags = set(request.set_flags), set(request.clear_flags)
    if not (set_flags | clear_flags).issubset(FLAG_COLUMNS):
        raise invalid_argument("INVALID_FLAG", "Unknown confidentiality flag.", "set_flags")
    if set_flags & clear_flags:
        raise invalid_argument(
            "FLAG_SET_AND_CLEARED", "A flag cannot be set and cleared at once.", "set_flags"
        )
    row = await load_document(session, loaded, document_id, now, for_update=True)
    caller = loaded.caller
    is_author = row.author_subject == caller.subject
    if not is_author:
        allowed = {R.CONFIDENTIALITY_FLAG_MASQUE_PS} if caller.acts_for_patient else set()
        if not (set_flags | clear_flags).issubset(allowed) or not (set_flags | clear_flags):
            raise permission_denied(
                "FLAG_CHANGE_NOT_ALLOWED", "The caller may not change these flags."
            )
    _check_etag(request.etag, row)
    values: dict[str, Any] = {}
    for flag in set_flags:
        values[FLAG_COLUMNS[flag]] = True
    for flag in clear_flags:
        values[FLAG_COLUMNS[flag]] = False
    if R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in set_flags and not row.invisible_patient:
        values["release_time"] = now + timedelta(days=settings.invisible_patient_release_days)
    if R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT in clear_flags:
        values["release_time"] = None
    if values:
        await session.execute(
            update(documents)
            .where(documents.c.id == row.id)
            .values(**values, update_time=now, revision=documents.c.revision + 1)
        )
    new = await _reload(session, row.id)
    if values:
        await _event(session, "visibility_changed", loaded, new, now)
    return _answer(loaded, new, now, answers.VISIBILITY, set_flags)


# ---------------------------------------------------------------------------
# List and search
# ---------------------------------------------------------------------------


def _range(col: Any, rng: Any, field: str) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    start = to_dt(rng.start_time) if rng.HasField("start_time") else None
    end = to_dt(rng.end_time) if rng.HasField("end_time") else None
    if start is not None and end is not None and end < start:
        raise invalid_argument("INVALID_FILTER", "The time range ends before it starts.", field)
    if start is not None:
        out.append(col >= start)
    if end is not None:
        out.append(col < end)
    return out


def filter_clause(flt: Any) -> list[ColumnElement[bool]]:  # noqa: PLR0912 - one branch per filter
    d = documents.c
    out: list[ColumnElement[bool]] = []
    known_classes = codes.table("document_classes")
    if any(c not in known_classes for c in flt.class_codes):
        raise invalid_argument("INVALID_FILTER", "Unknown class code.", "filter.class_codes")
    if flt.class_codes:
        out.append(d.class_code.in_(list(flt.class_codes)))
    if any(t not in codes.table("document_types") for t in flt.type_codes):
        raise invalid_argument("INVALID_FILTER", "Unknown type code.", "filter.type_codes")
    if flt.type_codes:
        out.append(d.type_code.in_(list(flt.type_codes)))
    if flt.author_rpps:
        out.append(d.author_rpps.in_(list(flt.author_rpps)))
    if flt.HasField("service_time"):
        rng = flt.service_time
        _range(d.sort_time, rng, "filter.service_time")  # validates the bounds only
        # The service period [start, stop or start] intersects [range start, range end).
        if rng.HasField("end_time"):
            out.append(d.sort_time < to_dt(rng.end_time))
        if rng.HasField("start_time"):
            out.append(func.coalesce(d.service_stop_time, d.sort_time) >= to_dt(rng.start_time))
    if flt.HasField("create_time"):
        out.extend(_range(d.create_time, flt.create_time, "filter.create_time"))
    statuses = list(flt.statuses) or [R.DOCUMENT_STATUS_CURRENT]
    if any(s not in R.DocumentStatus.values() for s in statuses):
        raise invalid_argument("INVALID_FILTER", "Unknown status.", "filter.statuses")
    if R.DOCUMENT_STATUS_UNSPECIFIED not in statuses:
        out.append(d.status.in_(statuses))
    if flt.confidentiality_flags:
        if not set(flt.confidentiality_flags).issubset(FLAG_COLUMNS):
            raise invalid_argument(
                "INVALID_FILTER", "Unknown flag.", "filter.confidentiality_flags"
            )
        out.append(or_(*[getattr(d, FLAG_COLUMNS[f]).is_(True) for f in flt.confidentiality_flags]))
    return out


async def list_documents(
    session: AsyncSession, loaded: Loaded, request: Any, settings: RecordsSettings, now: datetime
) -> Any:
    if request.order_by.strip() not in ORDERS:
        raise invalid_argument("INVALID_ORDER_BY", "Unsupported order_by.", "order_by")
    column_name, desc = ORDERS[request.order_by.strip()]
    size = pagination.page_size(request.page_size, 50, 200)
    d = documents.c
    conds = [
        d.dossier_pk == loaded.pk,
        visible_clause(loaded.caller, now),
        *filter_clause(request.filter),
    ]
    key = token_key(settings)
    fp = pagination.fingerprint(
        request.parent, request.filter, request.order_by.strip(), loaded.caller.subject
    )
    sort_col = getattr(d, column_name)
    page_conds = list(conds)
    if request.page_token:
        pos = pagination.decode(key, request.page_token, fp)
        try:
            last_t = datetime.fromisoformat(str(pos["t"]))
            last_i = int(pos["i"])
        except (KeyError, ValueError, TypeError) as exc:
            raise invalid_argument(
                "INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token"
            ) from exc
        if desc:
            page_conds.append(or_(sort_col < last_t, and_(sort_col == last_t, d.id < last_i)))
        else:
            page_conds.append(or_(sort_col > last_t, and_(sort_col == last_t, d.id > last_i)))
    order = [sort_col.desc(), d.id.desc()] if desc else [sort_col.asc(), d.id.asc()]
    rows = (
        await session.execute(select(documents).where(*page_conds).order_by(*order).limit(size + 1))
    ).all()
    total = int(
        (
            await session.execute(select(func.count()).select_from(documents).where(*conds))
        ).scalar_one()
    )
    out = R.ListDocumentsResponse(total_size=total)
    for row in rows[:size]:
        out.documents.append(to_proto(row, loaded.dossier_id, now))
    if len(rows) > size:
        last = rows[size - 1]
        out.next_page_token = pagination.encode(
            key, fp, {"t": getattr(last, column_name).isoformat(), "i": int(last.id)}
        )
    return out


async def search_documents(
    session: AsyncSession, loaded: Loaded, request: Any, settings: RecordsSettings, now: datetime
) -> Any:
    query = search.check_query(request.query)
    size = pagination.page_size(request.page_size, 20, 100)
    key = token_key(settings)
    fp = pagination.fingerprint(
        request.parent, request.query, request.filter, loaded.caller.subject
    )
    offset = 0
    if request.page_token:
        pos = pagination.decode(key, request.page_token, fp)
        offset = pos.get("o", -1) if isinstance(pos.get("o"), int) else -1
        if offset < 0:
            raise invalid_argument("INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token")
    filters = filter_clause(request.filter)
    joined, score, match = search.match_clause(session, query, loaded.pk)
    rows = (
        await session.execute(
            select(documents, score.label("score"))
            .select_from(joined)
            .where(
                match,
                documents.c.dossier_pk == loaded.pk,
                visible_clause(loaded.caller, now),
                *filters,
            )
            .order_by(score.desc(), documents.c.id.desc())
            .offset(offset)
            .limit(size + 1)
        )
    ).all()
    terms = search.query_terms(query)
    out = R.SearchDocumentsResponse()
    for row in rows[:size]:
        out.results.append(
            R.SearchResult(
                document=to_proto(row, loaded.dossier_id, now),
                snippet=search.snippet(row.title, terms),
                score=float(row.score or 0.0),
            )
        )
    if len(rows) > size:
        out.next_page_token = pagination.encode(key, fp, {"o": offset + size})
    return out
