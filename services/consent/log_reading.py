"""Reading a record's access log: its entries (ListAccessHistory) and its chain (VerifyAccessLog).

The patient (or a legal representative) reads and verifies their record's
log; so does the platform (an internal principal), on a record in any state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit import filtering, pagination
from kit.db import utcnow
from kit.errors import invalid_argument
from services.consent import accesslog, guard, repository
from services.consent.parse import dossier_of
from services.consent.parse import rpps as check_rpps
from services.consent.protos import entry_proto, timestamp
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2
P = principal_pb2

_VERIFY_BATCH = 2000


async def _check_reader(
    rt: Runtime, principal: principal_pb2.Principal, dossier: str, method: str
) -> None:
    if principal.kind == P.PRINCIPAL_KIND_INTERNAL:
        if await rt.cache.record(dossier) is None:
            raise guard.no_record()
        return
    await guard.permit(rt, principal, method, A.ACTION_READ_ACCESS_LOG, dossier, now=utcnow())


#: ListAccessHistory's AIP-160 `filter` (kit.filtering); see ListAccessHistoryRequest.filter.
HISTORY_FILTER = {
    "time": filtering.Field("timestamp", filtering.ORDERING),
    "principal.rpps": filtering.Field("string"),
    "mode": filtering.Field("enum", filtering.EQUALITY, P.AccessMode.DESCRIPTOR),
    "decision": filtering.Field("enum", filtering.EQUALITY, C.Decision.DESCRIPTOR),
    "emergency_access_rule": filtering.Field("string"),
}
_RULE_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_TICK = timedelta(microseconds=1)  # entry times are stored to the microsecond


@dataclass(frozen=True)
class _LogFilter:
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive
    rpps: str
    modes: list[int]
    decision: int
    emergency_rule: str = ""


def _single(conditions: list[filtering.Condition], field: str) -> str | int:
    values = filtering.one_of(conditions, field)
    if len(values) > 1:
        raise invalid_argument(filtering.REASON, f"Invalid filter: one {field} at most.", "filter")
    return values[0] if values and isinstance(values[0], str | int) else ""


def _log_filter(text: str, dossier: str) -> _LogFilter:
    conditions = filtering.parse(text, HISTORY_FILTER)
    start: datetime | None = None
    end: datetime | None = None
    for condition in (c for c in conditions if c.field == "time"):
        moment = condition.values[0]
        assert isinstance(moment, datetime)
        moment = moment.astimezone(UTC)
        if condition.operator in {">", "<="}:  # as the >= and < bounds the query takes
            moment += _TICK
        if condition.operator in {">", ">="}:
            start = moment if start is None else max(start, moment)
        else:
            end = moment if end is None else min(end, moment)
    rpps = str(_single(conditions, "principal.rpps"))
    if rpps:
        check_rpps(rpps, "filter")
    modes = sorted({m for m in filtering.one_of(conditions, "mode") if isinstance(m, int)})
    decision = _single(conditions, "decision")
    return _LogFilter(
        start,
        end,
        rpps,
        modes,
        decision if isinstance(decision, int) else 0,
        _emergency_rule(dossier, str(_single(conditions, "emergency_access_rule"))),
    )


def _emergency_rule(dossier: str, name: str) -> str:
    """The rule id of `dossiers/{dossier}/accessRules/{rule}` (a rule of this record)."""
    if not name:
        return ""
    prefix = f"{dossier}/accessRules/"
    rule = name.removeprefix(prefix)
    if not name.startswith(prefix) or not _RULE_ID.fullmatch(rule):
        raise invalid_argument(
            filtering.REASON,
            "Invalid filter: emergency_access_rule must name an access rule of this record.",
            "filter",
        )
    return rule


async def list_history(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.ListAccessHistoryRequest,
) -> consent_pb2.ListAccessHistoryResponse:
    """The record's entries newest first, with the professionals' names of the directory."""
    dossier = dossier_of(request.parent, "parent")
    size = pagination.page_size(request.page_size, 50, 500)
    flt = _log_filter(request.filter, dossier)
    # A token continues one caller's reading of one filter.
    bound = pagination.fingerprint(
        dossier,
        flt.start,
        flt.end,
        flt.rpps,
        flt.modes,
        flt.decision,
        flt.emergency_rule,
        principal.subject,
    )
    position = rt.page_tokens.read(request.page_token, bound)
    after = None if position is None else position.integer("sequence")
    await _check_reader(rt, principal, dossier, "ListAccessHistory")
    async with rt.sessions() as session:
        rows = await repository.history_page(
            session,
            dossier,
            start=flt.start,
            end=flt.end,
            rpps=flt.rpps,
            modes=flt.modes,
            decision=flt.decision,
            emergency_rule=flt.emergency_rule,
            before=after,
            limit=size + 1,
        )
    more = len(rows) > size
    rows = rows[:size]
    # Names and specialties of the directory; an RPPS it does not know stays an RPPS.
    people = await rt.directory.describe_many(r.rpps for r in rows)
    response = C.ListAccessHistoryResponse(
        entries=[entry_proto(r, people.get(r.rpps)) for r in rows]
    )
    if more:
        response.next_page_token = rt.page_tokens.issue({"sequence": int(rows[-1].sequence)}, bound)
    return response


async def verify(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.VerifyAccessLogRequest,
) -> consent_pb2.VerifyAccessLogResponse:
    """Recompute the record's chain; an anchor (a head the caller kept) must still be in it."""
    dossier = dossier_of(request.parent, "parent")
    if request.anchor_hash and (len(request.anchor_hash) != 64 or request.anchor_sequence <= 0):
        raise invalid_argument("INVALID_ANCHOR", "Malformed anchor.", "anchor_hash")
    await _check_reader(rt, principal, dossier, "VerifyAccessLog")
    report, anchor_row = await verify_chain(rt.sessions, dossier, request.anchor_sequence)
    response = C.VerifyAccessLogResponse(
        ok=report.ok,
        verified_entry_count=report.verified,
        head_hash=report.head_hash,
        head_sequence=report.head_sequence,
        verify_time=timestamp(utcnow()),
    )
    if not report.ok:
        response.first_broken_entry = f"{dossier}/accessLog/{report.broken_entry_id}"
        response.first_broken_sequence = report.broken_sequence
        response.chain_break = report.chain_break  # type: ignore[assignment]
    elif request.anchor_hash and (anchor_row is None or anchor_row[1] != request.anchor_hash):
        response.ok = False
        response.first_broken_sequence = request.anchor_sequence
        response.chain_break = (
            C.CHAIN_BREAK_SEQUENCE_GAP if anchor_row is None else C.CHAIN_BREAK_ENTRY_HASH_MISMATCH
        )
        if anchor_row is not None:
            response.first_broken_entry = f"{dossier}/accessLog/{anchor_row[0]}"
    return response


async def verify_chain(
    sessions: async_sessionmaker[AsyncSession],
    dossier: str,
    anchor_sequence: int = 0,
    batch: int = _VERIFY_BATCH,
) -> tuple[accesslog.ChainReport, tuple[str, str] | None]:
    """Recompute `dossier`'s chain in sequence order, batch by batch; the anchor's
    (entry id, entry hash) when `anchor_sequence` is in the log."""
    verifier = accesslog.ChainVerifier()
    anchor: tuple[str, str] | None = None
    last = 0
    async with sessions() as session:
        while True:
            rows = await repository.chain_batch(session, dossier, last, batch)
            if not rows:
                break
            mappings = [r._mapping for r in rows]
            for m in mappings:
                if anchor_sequence and int(m["sequence"]) == anchor_sequence:
                    anchor = (str(m["entry_id"]), str(m["entry_hash"]))
            if not verifier.feed(cast(Any, mappings)):
                break
            last = int(rows[-1].sequence)
    return verifier.report(), anchor
