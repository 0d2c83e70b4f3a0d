"""ListDocuments and SearchDocuments: a validated filter, the caller's visibility, a page.

Page tokens (`kit.pagination`) are signed keyset (list) or offset (search)
cursors bound to every other field of the request and to the caller; the count
of a list applies the same visibility as its rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit import codes, filtering, pagination
from kit.errors import invalid_argument
from services.records import search
from services.records.access import RecordContext
from services.records.document_view import to_proto
from services.records.repository import documents as repo
from services.records.repository.documents import DocumentQuery

R = records_pb2
#: order_by → (sort column, descending).
ORDERS = {
    "": ("sort_time", True),
    "service_start_time desc": ("sort_time", True),
    "service_start_time": ("sort_time", False),
    "create_time desc": ("create_time", True),
    "create_time": ("create_time", False),
}


#: ListDocuments' and SearchDocuments' AIP-160 `filter` (kit.filtering); the grammar and its
#: meaning are documented on ListDocumentsRequest.filter.
FILTER_FIELDS = {
    "class_code": filtering.Field("string"),
    "type_code": filtering.Field("string"),
    "author.rpps": filtering.Field("string"),
    "status": filtering.Field("enum", filtering.EQUALITY, R.DocumentStatus.DESCRIPTOR),
    "confidentiality_flags": filtering.Field(
        "enum", filtering.MEMBERSHIP, R.ConfidentialityFlag.DESCRIPTOR
    ),
    "create_time": filtering.Field("timestamp", filtering.ORDERING),
    # Upper bound on the start and lower bound on the stop (an instantaneous act stops when
    # it starts): together, the acts whose service period meets a range.
    "service_start_time": filtering.Field("timestamp", frozenset({"<", "<="})),
    "service_stop_time": filtering.Field("timestamp", frozenset({">", ">="})),
}
_TICK = timedelta(microseconds=1)  # times are stored to the microsecond


def _bounds(
    conditions: list[filtering.Condition], field: str
) -> tuple[datetime | None, datetime | None]:
    """[from, to) of the field's comparisons."""
    low: datetime | None = None
    high: datetime | None = None
    for condition in (c for c in conditions if c.field == field):
        moment = condition.values[0]
        assert isinstance(moment, datetime)
        moment = moment.astimezone(UTC)
        if condition.operator in {">", "<="}:  # as the >= and < bounds the query takes
            moment += _TICK
        if condition.operator in {">", ">="}:
            low = moment if low is None else max(low, moment)
        else:
            high = moment if high is None else min(high, moment)
    return low, high


def _strings(conditions: list[filtering.Condition], field: str) -> tuple[str, ...]:
    return tuple(str(v) for v in filtering.one_of(conditions, field))


def _enums(conditions: list[filtering.Condition], field: str) -> tuple[int, ...]:
    return tuple(v for v in filtering.one_of(conditions, field) if isinstance(v, int))


def parse_filter(text: str) -> DocumentQuery:
    """The `filter` as a query; INVALID_FILTER names what is wrong (syntax, field, code)."""
    conditions = filtering.parse(text, FILTER_FIELDS)
    class_codes = _strings(conditions, "class_code")
    if any(c not in codes.table("document_classes") for c in class_codes):
        raise invalid_argument(filtering.REASON, "Invalid filter: unknown class code.", "filter")
    type_codes = _strings(conditions, "type_code")
    if any(t not in codes.table("document_types") for t in type_codes):
        raise invalid_argument(filtering.REASON, "Invalid filter: unknown type code.", "filter")
    _, service_to = _bounds(conditions, "service_start_time")
    service_from, _ = _bounds(conditions, "service_stop_time")
    created_from, created_to = _bounds(conditions, "create_time")
    flags = cast(
        "tuple[R.ConfidentialityFlag.ValueType, ...]",
        _enums(conditions, "confidentiality_flags"),
    )
    return DocumentQuery(
        class_codes=class_codes,
        type_codes=type_codes,
        author_rpps=_strings(conditions, "author.rpps"),
        service_from=service_from,
        service_to=service_to,
        created_from=created_from,
        created_to=created_to,
        statuses=_enums(conditions, "status") or (R.DOCUMENT_STATUS_CURRENT,),
        flags=flags,
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
