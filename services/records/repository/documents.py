"""SQL of `documents` and `document_contents`: writes, single reads, lists and search."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    LABEL_STYLE_TABLENAME_PLUS_COL,
    ColumnElement,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from services.records.models import document_contents, documents, dossiers
from services.records.repository import fulltext
from services.records.repository.rows import DocumentRow, DossierRow, typed, typed_prefixed
from services.records.visibility import Visibility

R = records_pb2
d = documents.c

#: Confidentiality flag → its column.
FLAG_COLUMNS = {
    R.CONFIDENTIALITY_FLAG_MASQUE_PS: "masque_ps",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT: "invisible_patient",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX: "invisible_representants",
}
#: Columns a list may be sorted on (keyset: the column, then the primary key).
SORT_COLUMNS = ("sort_time", "create_time")


@dataclass(frozen=True)
class NewDocument:
    """A document version as created (CreateDocument, ReplaceDocument); `sealed`: its content."""

    document_id: str
    dossier_pk: int
    unique_id: str | None
    type_code: str
    class_code: str
    title: str
    author: bytes
    author_rpps: str
    author_subject: str
    submitter: str
    service_start_time: datetime | None
    service_stop_time: datetime | None
    sort_time: datetime
    practice_setting_code: str
    facility_type_code: str
    format: int
    size_bytes: int
    sha256: str
    masque_ps: bool
    invisible_patient: bool
    invisible_representants: bool
    release_time: datetime | None
    status: int
    version: int
    replaces_id: str | None
    create_time: datetime
    sealed: bytes


@dataclass(frozen=True)
class DocumentQuery:
    """A validated ListDocuments / SearchDocuments filter; empty fields filter nothing."""

    class_codes: tuple[str, ...] = ()
    type_codes: tuple[str, ...] = ()
    author_rpps: tuple[str, ...] = ()
    #: The service period [start, stop or start] intersects [service_from, service_to).
    service_from: datetime | None = None
    service_to: datetime | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    #: None: every status.
    statuses: tuple[int, ...] | None = (R.DOCUMENT_STATUS_CURRENT,)
    #: Documents carrying any of these confidentiality flags.
    flags: tuple[R.ConfidentialityFlag.ValueType, ...] = ()


# -- writes -------------------------------------------------------------------


async def unique_id_taken(session: AsyncSession, unique_id: str) -> bool:
    query = select(d.id).where(d.unique_id == unique_id)
    return (await session.execute(query)).first() is not None


async def insert(session: AsyncSession, new: NewDocument) -> DocumentRow:
    """The new document at revision 1 with its sealed content."""
    values = asdict(new)
    sealed = values.pop("sealed")
    statement = (
        documents.insert()
        .returning(d.id)
        .values(**values, update_time=new.create_time, delete_reason="", revision=1)
    )
    pk = int((await session.execute(statement)).scalar_one())
    await session.execute(document_contents.insert().values(document_pk=pk, sealed=sealed))
    return await get(session, pk)


async def change(session: AsyncSession, pk: int, **values: object) -> DocumentRow:
    """Update the document's columns; a new revision (etag). Returns the row as now stored."""
    await session.execute(
        update(documents).where(d.id == pk).values(**values, revision=d.revision + 1)
    )
    return await get(session, pk)


# -- single reads ---------------------------------------------------------------


async def get(session: AsyncSession, pk: int) -> DocumentRow:
    return typed(DocumentRow, (await session.execute(select(documents).where(d.id == pk))).one())


async def find(
    session: AsyncSession, dossier_pk: int, document_id: str, *, for_update: bool = False
) -> DocumentRow | None:
    query = select(documents).where(d.document_id == document_id, d.dossier_pk == dossier_pk)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return None if row is None else typed(DocumentRow, row)


# GetDocument's one round trip: the record, the document and its sealed content in one
# statement, built once (bound parameters; SQLAlchemy memoises its cache key on this object,
# so nothing is rebuilt or re-keyed per call). Outer joins: a missing document still returns
# the record row, so "record not found" and "document not found" stay distinct answers.
_READ_WITH_RECORD = (
    select(dossiers, documents, document_contents.c.sealed)
    .select_from(
        dossiers.outerjoin(
            documents,
            and_(d.dossier_pk == dossiers.c.id, d.document_id == bindparam("document_id")),
        ).outerjoin(document_contents, document_contents.c.document_pk == d.id)
    )
    .where(dossiers.c.dossier_id == bindparam("dossier_id"))
    .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
)


@dataclass(frozen=True, slots=True)
class DocumentWithRecord:
    record: DossierRow
    document: DocumentRow | None
    sealed: bytes | None


async def read_with_record(
    session: AsyncSession, dossier_id: str, document_id: str
) -> DocumentWithRecord | None:
    """The record of `dossier_id` with its document `document_id` (None if it has none by
    that id) and the document's sealed content; None if there is no such record."""
    result = await session.execute(
        _READ_WITH_RECORD, {"dossier_id": dossier_id, "document_id": document_id}
    )
    row = result.one_or_none()
    if row is None:
        return None
    mapping: Any = row._mapping
    record = typed_prefixed(DossierRow, mapping, "dossiers_")
    if mapping["documents_id"] is None:
        return DocumentWithRecord(record, None, None)
    sealed = mapping["document_contents_sealed"]
    return DocumentWithRecord(
        record,
        typed_prefixed(DocumentRow, mapping, "documents_"),
        None if sealed is None else bytes(sealed),
    )


async def find_by_name(
    session: AsyncSession, dossier_id: str, document_id: str
) -> DocumentRow | None:
    """The document `dossiers/{dossier_id}/documents/{document_id}`, whoever asks."""
    query = (
        select(documents)
        .join(dossiers, dossiers.c.id == d.dossier_pk)
        .where(dossiers.c.dossier_id == dossier_id, d.document_id == document_id)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else typed(DocumentRow, row)


async def sealed_content(session: AsyncSession, pk: int) -> bytes:
    query = select(document_contents.c.sealed).where(document_contents.c.document_pk == pk)
    return bytes((await session.execute(query)).scalar_one())


async def with_contents(session: AsyncSession, dossier_pk: int) -> list[tuple[DocumentRow, bytes]]:
    """Every document of a record with its sealed content (the purge rebuilds index bodies)."""
    rows = await session.execute(
        select(documents, document_contents.c.sealed)
        .join(document_contents, document_contents.c.document_pk == d.id)
        .where(d.dossier_pk == dossier_pk)
    )
    return [(typed(DocumentRow, row), bytes(row.sealed)) for row in rows]


# -- lists and search -------------------------------------------------------------


def visible(vis: Visibility, now: datetime) -> ColumnElement[bool]:
    """SQL twin of `visibility.admits`: the documents `vis` lets its caller see."""
    if not vis.reads:
        return false()
    mine = d.author_subject == vis.subject
    by_class = [
        *([d.class_code.in_(sorted(vis.class_codes))] if vis.class_codes else []),
        *([d.type_code.in_(sorted(vis.type_codes))] if vis.type_codes else []),
    ]
    conds: list[ColumnElement[bool]] = [
        or_(*by_class),
        or_(d.status != R.DOCUMENT_STATUS_DELETED, mine),
    ]
    if vis.hides_masked:
        conds.append(or_(d.masque_ps.is_(False), mine))
    if vis.hides_unreleased:
        released = and_(d.release_time.is_not(None), d.release_time <= now)
        conds.append(or_(d.invisible_patient.is_(False), released, mine))
    if vis.hides_from_representatives:
        conds.append(or_(d.invisible_representants.is_(False), mine))
    return and_(true(), *conds)


def _filtered(q: DocumentQuery) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if q.class_codes:
        out.append(d.class_code.in_(q.class_codes))
    if q.type_codes:
        out.append(d.type_code.in_(q.type_codes))
    if q.author_rpps:
        out.append(d.author_rpps.in_(q.author_rpps))
    if q.service_to is not None:
        out.append(d.sort_time < q.service_to)
    if q.service_from is not None:
        out.append(func.coalesce(d.service_stop_time, d.sort_time) >= q.service_from)
    if q.created_from is not None:
        out.append(d.create_time >= q.created_from)
    if q.created_to is not None:
        out.append(d.create_time < q.created_to)
    if q.statuses is not None:
        out.append(d.status.in_(q.statuses))
    if q.flags:
        out.append(or_(*[getattr(d, FLAG_COLUMNS[f]).is_(True) for f in q.flags]))
    return out


def _where(
    dossier_pk: int, vis: Visibility, q: DocumentQuery, now: datetime
) -> list[ColumnElement[bool]]:
    return [d.dossier_pk == dossier_pk, visible(vis, now), *_filtered(q)]


async def page(
    session: AsyncSession,
    dossier_pk: int,
    vis: Visibility,
    q: DocumentQuery,
    now: datetime,
    *,
    sort: str,
    descending: bool,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[DocumentRow]:
    """Up to `limit` documents after the keyset position `after` (sort value, primary key)."""
    col = getattr(d, sort)
    conds = _where(dossier_pk, vis, q, now)
    if after is not None:
        last_t, last_i = after
        if descending:
            conds.append(or_(col < last_t, and_(col == last_t, d.id < last_i)))
        else:
            conds.append(or_(col > last_t, and_(col == last_t, d.id > last_i)))
    order = [col.desc(), d.id.desc()] if descending else [col.asc(), d.id.asc()]
    rows = await session.execute(select(documents).where(*conds).order_by(*order).limit(limit))
    return [typed(DocumentRow, row) for row in rows]


async def count(
    session: AsyncSession, dossier_pk: int, vis: Visibility, q: DocumentQuery, now: datetime
) -> int:
    query = select(func.count()).select_from(documents).where(*_where(dossier_pk, vis, q, now))
    return int((await session.execute(query)).scalar_one())


async def search(
    session: AsyncSession,
    dossier_pk: int,
    vis: Visibility,
    q: DocumentQuery,
    now: datetime,
    *,
    text: str,
    offset: int,
    limit: int,
) -> list[tuple[DocumentRow, float]]:
    """Matching documents, best first, with their score."""
    joined, score, match = fulltext.match_clause(session, text, dossier_pk)
    rows = await session.execute(
        select(documents, score.label("score"))
        .select_from(joined)
        .where(match, *_where(dossier_pk, vis, q, now))
        .order_by(score.desc(), d.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [(typed(DocumentRow, row), float(row.score or 0.0)) for row in rows]
