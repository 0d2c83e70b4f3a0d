"""GetCareHistory: a record's lines in the window, filtered, grouped, paginated.

A record holds at most a few thousand lines over 24 months, so the filtered
lines are loaded once (bounded by `history_max_lines_per_read`), drug lines
are folded into ATC class groups, and the page is an offset into the ordered
entries. The page token (kit.pagination) binds the offset to the request's other
fields, so a token reused with other filters is refused instead of silently
skipping entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.history.v1 import history_pb2
from kit import filtering, names, pagination
from kit import ins as kit_ins
from kit.directory import DirectoryClient
from kit.errors import ServiceError, invalid_argument, permission_denied
from services.history_feed import codes, display, repository
from services.history_feed.materialize import window_start

HISTORY_CLASS_CODE = "60"
AMO_FEEDER_ROLE = "alimentation_amo"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_LINES_PER_GROUP = 50
DEFAULT_ATC_LEVEL = 3
_SUFFIX = "/careHistory"
_PATIENT_DOSSIER = re.compile(r"patients/([0-9A-Za-z]{15})/dossier")
#: `Query.dossier` of a request naming the patient by INS (the INS follows).
PATIENT_PREFIX = "patients/"


def is_amo_feeder(principal: principal_pb2.Principal) -> bool:
    return (
        principal.kind == principal_pb2.PRINCIPAL_KIND_SERVICE or AMO_FEEDER_ROLE in principal.roles
    )


def check_reader(principal: principal_pb2.Principal) -> bool:
    """PERMISSION_DENIED for the AMO (access rule 4); False when the scope excludes class 60."""
    if is_amo_feeder(principal):
        raise permission_denied("AMO_CANNOT_READ", "The AMO feeder writes history, never reads it.")
    scope = principal.scope
    return HISTORY_CLASS_CODE in scope.readable_class_codes and not scope.administrative_only


def _to_proto_date(value: date) -> history_pb2.Date:
    return history_pb2.Date(year=value.year, month=value.month, day=value.day)


#: GetCareHistory's AIP-160 `filter` (kit.filtering); see GetCareHistoryRequest.filter.
FILTER_FIELDS = {
    "kind": filtering.Field("enum", filtering.EQUALITY, history_pb2.ClaimKind.DESCRIPTOR),
    "care_date": filtering.Field("date", filtering.EQUALITY | filtering.ORDERING),
    "atc_code": filtering.Field("string"),
}


def _bad_filter(message: str) -> ServiceError:
    return invalid_argument(filtering.REASON, f"Invalid filter: {message}", "filter")


def _care_dates(conditions: list[filtering.Condition]) -> tuple[date | None, date | None]:
    """The first and last care dates the filter's `care_date` comparisons keep."""
    start: date | None = None
    end: date | None = None
    day = timedelta(days=1)
    for condition in (c for c in conditions if c.field == "care_date"):
        value = condition.values[0]
        assert isinstance(value, date)
        if condition.operator in {">", ">=", "="}:
            low = value + day if condition.operator == ">" else value
            start = low if start is None else max(start, low)
        if condition.operator in {"<", "<=", "="}:
            high = value - day if condition.operator == "<" else value
            end = high if end is None else min(end, high)
    if start and end and start > end:
        raise _bad_filter("the care_date bounds leave no date.")
    return start, end


def _atc_prefix(conditions: list[filtering.Condition]) -> str:
    wanted = filtering.one_of(conditions, "atc_code")
    if not wanted:
        return ""
    value = str(wanted[0])
    if len(wanted) > 1 or not value.endswith("*") or not codes.ATC.fullmatch(value[:-1]):
        raise _bad_filter('atc_code takes one ATC code prefix ending with "*" ("C10*").')
    return value[:-1]


@dataclass(frozen=True)
class Query:
    dossier: str
    kinds: frozenset[int]
    start: date | None
    end: date | None
    grouping: int
    atc_level: int
    atc_prefix: str
    page_size: int
    offset: int


def parse_request(
    request: history_pb2.GetCareHistoryRequest, tokens: pagination.PageTokens
) -> Query:
    name = request.name
    dossier = name.removesuffix(_SUFFIX)
    alias = _PATIENT_DOSSIER.fullmatch(dossier)
    if alias is not None:
        # `patients/{ins}/dossier/careHistory`: a professional who knows only the INS.
        dossier = PATIENT_PREFIX + kit_ins.validate(alias.group(1), "name")
    elif dossier == name or not names.DOSSIER.fullmatch(dossier):
        raise names.invalid_name(
            "Expected dossiers/{dossier}/careHistory or patients/{ins}/dossier/careHistory."
        )
    conditions = filtering.parse(request.filter, FILTER_FIELDS)
    start, end = _care_dates(conditions)
    prefix = _atc_prefix(conditions)
    kinds = frozenset(k for k in filtering.one_of(conditions, "kind") if isinstance(k, int))
    level = request.atc_level or DEFAULT_ATC_LEVEL
    if level not in codes.ATC_LEVEL_LENGTHS:
        raise invalid_argument("INVALID_ATC_LEVEL", "atc_level must be 1 to 5.", "atc_level")
    size = pagination.page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return Query(
        dossier=dossier,
        kinds=kinds,
        start=start,
        end=end,
        grouping=request.drug_grouping,
        atc_level=level,
        atc_prefix=prefix,
        page_size=size,
        offset=_offset(request, tokens),
    )


def _offset(request: history_pb2.GetCareHistoryRequest, tokens: pagination.PageTokens) -> int:
    position = tokens.read(request.page_token, pagination.request_fingerprint(request))
    return 0 if position is None else position.integer("o")


@dataclass
class _Group:
    code: str
    lines: list[history_pb2.ClaimLine] = field(default_factory=list)
    count: int = 0
    first: date | None = None
    last: date | None = None
    billed: int = 0
    reimbursed: int = 0


def _line_date(line: history_pb2.ClaimLine) -> date:
    return date(line.care_date.year, line.care_date.month, line.care_date.day)


def build_entries(
    lines: list[history_pb2.ClaimLine], query: Query
) -> list[history_pb2.CareHistoryEntry]:
    """Entries newest first; lines arrive newest first."""
    grouping = query.grouping != history_pb2.DRUG_GROUPING_NONE
    width = codes.ATC_LEVEL_LENGTHS[query.atc_level]
    keyed: list[tuple[date, str, history_pb2.CareHistoryEntry | _Group]] = []
    groups: dict[str, _Group] = {}
    for line in lines:
        care = _line_date(line)
        if grouping and line.WhichOneof("details") == "drug":
            code = line.drug.atc_code[:width]
            group = groups.get(code)
            if group is None:
                group = groups[code] = _Group(code=code, first=care, last=care)
                keyed.append((care, "1" + code, group))
            group.count += 1
            group.first = care
            group.billed += line.billed_amount_cents
            group.reimbursed += line.reimbursed_amount_cents
            if len(group.lines) < MAX_LINES_PER_GROUP:
                group.lines.append(line)
            continue
        keyed.append((care, "0" + line.line_id, history_pb2.CareHistoryEntry(line=line)))
    keyed.sort(key=lambda item: (-item[0].toordinal(), item[1]))
    entries: list[history_pb2.CareHistoryEntry] = []
    for _, _, item in keyed:
        if isinstance(item, _Group):
            assert item.first is not None
            assert item.last is not None
            entries.append(
                history_pb2.CareHistoryEntry(
                    drug_group=history_pb2.DrugGroup(
                        atc_class_code=item.code,
                        atc_class_label=codes.atc_class_label(item.code),
                        line_count=item.count,
                        first_care_date=_to_proto_date(item.first),
                        last_care_date=_to_proto_date(item.last),
                        billed_amount_cents=item.billed,
                        reimbursed_amount_cents=item.reimbursed,
                        lines=item.lines,
                    )
                )
            )
        else:
            entries.append(item)
    return entries


async def care_history(
    sessions: async_sessionmaker[AsyncSession],
    request: history_pb2.GetCareHistoryRequest,
    *,
    tokens: pagination.PageTokens,
    readable: bool,
    today: date,
    window_months: int,
    max_lines: int,
    directory: DirectoryClient,
    book: display.VaccinationBook,
) -> history_pb2.GetCareHistoryResponse:
    """The response for an allowed caller (`readable`: the scope includes class 60), its
    lines shown with names and vaccination links (services.history_feed.display)."""
    query = parse_request(request, tokens)
    response = history_pb2.GetCareHistoryResponse(name=request.name)
    if not readable:
        return response
    async with sessions() as session:
        if query.dossier.startswith(PATIENT_PREFIX):
            dossier = await repository.find_dossier_of(
                session, query.dossier.removeprefix(PATIENT_PREFIX)
            )
        else:
            dossier = await repository.find_dossier(session, query.dossier)
        if dossier is None:
            return response  # not (yet) backfilled: nothing to show
        oldest = max(dossier.since_date, window_start(today, window_months))
        response.history_start_date.CopyFrom(_to_proto_date(oldest))
        lines_query = repository.LineQuery(
            ins=dossier.patient_ins,
            since=max(oldest, query.start) if query.start else oldest,
            until=query.end,
            kinds=query.kinds,
            atc_prefix=query.atc_prefix,
        )
        latest = await repository.last_receive_time(session, lines_query)
        rows = await repository.lines(session, lines_query, max_lines)
    if latest is not None:
        response.last_receive_time.FromDatetime(_aware(latest))
    lines: list[history_pb2.ClaimLine] = []
    for payload, receive_time in rows:
        line = history_pb2.ClaimLine.FromString(payload)
        line.receive_time.FromDatetime(_aware(receive_time))
        lines.append(line)
    entries = build_entries(lines, query)
    page = entries[query.offset : query.offset + query.page_size]
    response.entries.extend(page)
    if query.offset + query.page_size < len(entries):
        response.next_page_token = tokens.issue(
            {"o": query.offset + query.page_size}, pagination.request_fingerprint(request)
        )
    await display.decorate(response, query.dossier, directory, book)
    return response


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
