"""ListDocuments and SearchDocuments: a validated filter, the caller's visibility, a page.

Page tokens (`kit.pagination`) are signed keyset (list) or offset (search)
cursors bound to every other field of the request and to the caller; the count
of a list applies the same visibility as its rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit import codes, pagination
from kit.errors import invalid_argument
from services.records import search
from services.records.access import RecordContext
from services.records.document_view import to_proto
from services.records.repository import documents as repo
from services.records.repository.documents import FLAG_COLUMNS, DocumentQuery
from services.records.timestamps import to_dt

R = records_pb2
#: order_by → (sort column, descending).
ORDERS = {
    "": ("sort_time", True),
    "service_start_time desc": ("sort_time", True),
    "service_start_time": ("sort_time", False),
    "create_time desc": ("create_time", True),
    "create_time": ("create_time", False),
}


def _range(rng: R.TimeRange, field: str) -> tuple[datetime | None, datetime | None]:
    start = to_dt(rng.start_time) if rng.HasField("start_time") else None
    end = to_dt(rng.end_time) if rng.HasField("end_time") else None
    if start is not None and end is not None and end < start:
        raise invalid_argument("INVALID_FILTER", "The time range ends before it starts.", field)
    return start, end


def parse_filter(flt: R.DocumentFilter) -> DocumentQuery:
    """The filter as a query; INVALID_FILTER names the first unknown code or bad range."""
    if any(c not in codes.table("document_classes") for c in flt.class_codes):
        raise invalid_argument("INVALID_FILTER", "Unknown class code.", "filter.class_codes")
    if any(t not in codes.table("document_types") for t in flt.type_codes):
        raise invalid_argument("INVALID_FILTER", "Unknown type code.", "filter.type_codes")
    service_from = service_to = created_from = created_to = None
    if flt.HasField("service_time"):
        service_from, service_to = _range(flt.service_time, "filter.service_time")
    if flt.HasField("create_time"):
        created_from, created_to = _range(flt.create_time, "filter.create_time")
    statuses = tuple(flt.statuses) or (R.DOCUMENT_STATUS_CURRENT,)
    if any(s not in R.DocumentStatus.values() for s in statuses):
        raise invalid_argument("INVALID_FILTER", "Unknown status.", "filter.statuses")
    if not set(flt.confidentiality_flags).issubset(FLAG_COLUMNS):
        raise invalid_argument("INVALID_FILTER", "Unknown flag.", "filter.confidentiality_flags")
    return DocumentQuery(
        class_codes=tuple(flt.class_codes),
        type_codes=tuple(flt.type_codes),
        author_rpps=tuple(flt.author_rpps),
        service_from=service_from,
        service_to=service_to,
        created_from=created_from,
        created_to=created_to,
        statuses=None if R.DOCUMENT_STATUS_UNSPECIFIED in statuses else statuses,
        flags=tuple(flt.confidentiality_flags),
    )


def _keyset(position: pagination.Position | None) -> tuple[datetime, int] | None:
    if position is None:
        return None
    try:
        last = datetime.fromisoformat(position.text("t"))
    except ValueError as exc:
        raise pagination.invalid_token() from exc
    return last, position.integer("i")


async def list_documents(
    session: AsyncSession,
    record: RecordContext,
    request: R.ListDocumentsRequest,
    tokens: pagination.PageTokens,
    now: datetime,
) -> R.ListDocumentsResponse:
    order_by = request.order_by.strip()
    if order_by not in ORDERS:
        raise invalid_argument("INVALID_ORDER_BY", "Unsupported order_by.", "order_by")
    sort, descending = ORDERS[order_by]
    size = pagination.page_size(request.page_size, 50, 200)
    query = parse_filter(request.filter)
    vis = record.caller.visibility
    bound = pagination.request_fingerprint(request, record.caller.subject)
    after = _keyset(tokens.read(request.page_token, bound))
    rows = await repo.page(
        session,
        record.pk,
        vis,
        query,
        now,
        sort=sort,
        descending=descending,
        after=after,
        limit=size + 1,
    )
    out = R.ListDocumentsResponse(total_size=await repo.count(session, record.pk, vis, query, now))
    for row in rows[:size]:
        out.documents.append(to_proto(row, record.dossier_id, now))
    if len(rows) > size:
        last = rows[size - 1]
        out.next_page_token = tokens.issue(
            {"t": getattr(last, sort).isoformat(), "i": last.id}, bound
        )
    return out


async def search_documents(
    session: AsyncSession,
    record: RecordContext,
    request: R.SearchDocumentsRequest,
    tokens: pagination.PageTokens,
    now: datetime,
) -> R.SearchDocumentsResponse:
    text = search.check_query(request.query)
    size = pagination.page_size(request.page_size, 20, 100)
    bound = pagination.request_fingerprint(request, record.caller.subject)
    position = tokens.read(request.page_token, bound)
    offset = position.integer("o") if position is not None else 0
    query = parse_filter(request.filter)
    hits = await repo.search(
        session,
        record.pk,
        record.caller.visibility,
        query,
        now,
        text=text,
        offset=offset,
        limit=size + 1,
    )
    terms = search.highlighted_terms(text)
    out = R.SearchDocumentsResponse()
    for row, score in hits[:size]:
        out.results.append(
            R.SearchResult(
                document=to_proto(row, record.dossier_id, now),
                snippet=search.snippet(row.title, terms),
                score=score,
            )
        )
    if len(hits) > size:
        out.next_page_token = tokens.issue({"o": offset + size}, bound)
    return out
