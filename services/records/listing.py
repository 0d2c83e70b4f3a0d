"""ListDocuments and SearchDocuments: a validated filter, the caller's visibility, a page.

Page tokens are signed keyset (list) or offset (search) cursors bound to the
request and the caller (`pagination`); the count of a list applies the same
visibility as its rows.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit import codes
from kit.errors import invalid_argument
from services.records import pagination, search
from services.records.access import RecordContext
from services.records.document_view import to_proto
from services.records.repository import documents as repo
from services.records.repository.documents import FLAG_COLUMNS, DocumentQuery
from services.records.settings import RecordsSettings
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


def token_key(settings: RecordsSettings) -> bytes:
    """The key signing page tokens, derived from the current KEK."""
    kek = settings.kek_bytes()[settings.records_kek_id]
    return hashlib.sha256(b"dmp-records-page-token|" + kek).digest()


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


def _keyset(pos: dict[str, object]) -> tuple[datetime, int]:
    try:
        return datetime.fromisoformat(str(pos["t"])), int(str(pos["i"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise invalid_argument(
            "INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token"
        ) from exc


async def list_documents(
    session: AsyncSession,
    record: RecordContext,
    request: R.ListDocumentsRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.ListDocumentsResponse:
    order_by = request.order_by.strip()
    if order_by not in ORDERS:
        raise invalid_argument("INVALID_ORDER_BY", "Unsupported order_by.", "order_by")
    sort, descending = ORDERS[order_by]
    size = pagination.page_size(request.page_size, 50, 200)
    query = parse_filter(request.filter)
    vis = record.caller.visibility
    key = token_key(settings)
    fp = pagination.fingerprint(request.parent, request.filter, order_by, record.caller.subject)
    after = _keyset(pagination.decode(key, request.page_token, fp)) if request.page_token else None
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
        out.next_page_token = pagination.encode(
            key, fp, {"t": getattr(last, sort).isoformat(), "i": last.id}
        )
    return out


async def search_documents(
    session: AsyncSession,
    record: RecordContext,
    request: R.SearchDocumentsRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.SearchDocumentsResponse:
    text = search.check_query(request.query)
    size = pagination.page_size(request.page_size, 20, 100)
    key = token_key(settings)
    fp = pagination.fingerprint(
        request.parent, request.query, request.filter, record.caller.subject
    )
    offset = 0
    if request.page_token:
        pos = pagination.decode(key, request.page_token, fp)
        found = pos.get("o", -1)
        offset = found if isinstance(found, int) else -1
        if offset < 0:
            raise invalid_argument("INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token")
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
        out.next_page_token = pagination.encode(key, fp, {"o": offset + size})
    return out
