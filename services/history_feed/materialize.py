"""Which lines a record shows: its INS, from its start date, within the window.

Nothing is copied at backfill: the record is marked (dossier → INS, start
date) and reads select the stored lines of that INS in the rolling window. So
lines received later show up at once, and lines older than the window roll
off without deleting the source lines (a record created later still finds
them, and the AMO's own retention is not ours to cut short).

A backfill is idempotent per request id (`kit.idempotency`: a retry gets the
first answer) and per record (marking it again only moves its start earlier).
"""

from __future__ import annotations

import calendar
from datetime import date

import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins
from kit import names
from kit.db import transaction, utcnow
from kit.errors import ServiceError, failed_precondition, invalid_argument
from kit.idempotency import Ledger
from kit.logs import get_logger
from services.history_feed import repository
from services.history_feed.models import processed_requests

log = get_logger(__name__)

METHOD = "BackfillDossier"
REQUESTS = Ledger(processed_requests)


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier, clamped to the month's end (29 Feb → 28 Feb)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def window_start(today: date, months: int) -> date:
    return months_before(today, months)


def check_dossier_name(name: str, field: str) -> str:
    names.parse(names.DOSSIER, name, "Expected dossiers/{dossier}.", field)
    return name


def _since_date(request: history_pb2.BackfillDossierRequest) -> date | None:
    if not request.HasField("since_date"):
        return None
    value = request.since_date
    try:
        return date(value.year, value.month, value.day)
    except ValueError:  # not a claim line: no LineError (its reasons are line rejections)
        raise invalid_argument(
            "INVALID_SINCE_DATE", "since_date is not a valid calendar date.", "since_date"
        ) from None


async def backfill(
    sessions: async_sessionmaker[AsyncSession],
    request: history_pb2.BackfillDossierRequest,
    *,
    scope: str,
    today: date,
    window_months: int,
) -> history_pb2.BackfillDossierResponse:
    """Mark the record's INS and start date; the first answer again for a retry."""
    since_date = _since_date(request)
    dossier = check_dossier_name(request.name, "name")
    ins = kit_ins.validate(request.patient_ins, "patient_ins")
    key = REQUESTS.key(request)
    oldest = window_start(today, window_months)
    since = max(since_date or oldest, oldest)
    for attempt in (0, 1):
        now = utcnow()
        try:
            async with transaction(sessions) as session:
                prior = await REQUESTS.replay(
                    session,
                    key,
                    scope=scope,
                    method=METHOD,
                    response_type=history_pb2.BackfillDossierResponse,
                )
                if prior is not None:
                    return prior
                response = await _mark(session, dossier, ins, since, oldest)
                await REQUESTS.remember(
                    session, key, scope=scope, method=METHOD, response=response, now=now
                )
        except (IntegrityError, ServiceError) as exc:
            # A concurrent backfill of the same record or request committed first: run
            # again, as a retry (the record is marked now; a twin's answer is stored).
            concurrent = isinstance(exc, IntegrityError) or (
                exc.code == grpc.StatusCode.ABORTED and exc.reason == "REQUEST_IN_PROGRESS"
            )
            if attempt or not concurrent:
                raise
            continue
        log.info(
            "backfilled",
            dossier=dossier,
            materialized=response.materialized_count,
            present=response.already_present_count,
        )
        return response
    raise AssertionError("unreachable")


async def _mark(
    session: AsyncSession, dossier: str, ins: str, since: date, oldest: date
) -> history_pb2.BackfillDossierResponse:
    current = await repository.find_dossier(session, dossier)
    visible = await repository.count_lines(session, ins, since)
    if current is None:
        await repository.mark_dossier(session, dossier, ins, since, utcnow())
        materialized, present = visible, 0
    else:
        if current.patient_ins != ins:
            raise failed_precondition("DOSSIER_INS_MISMATCH", "This record belongs to another INS.")
        present = await repository.count_lines(session, ins, max(current.since_date, oldest))
        if since < current.since_date:
            await repository.move_start(session, dossier, since)
        materialized = max(visible - present, 0)
    return history_pb2.BackfillDossierResponse(
        care_history=f"{dossier}/careHistory",
        materialized_count=materialized,
        already_present_count=present,
    )
