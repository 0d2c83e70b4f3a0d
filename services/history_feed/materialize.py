"""Which lines a record shows: its INS, from its start date, within the window.

Nothing is copied at backfill: the record is marked (dossier → INS, start
date) and reads select the stored lines of that INS in the rolling window. So
lines received later show up at once, and lines older than the window roll
off without deleting the source lines (a record created later still finds
them, and the AMO's own retention is not ours to cut short).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins
from kit.db import utcnow
from kit.errors import failed_precondition, invalid_argument
from kit.logs import get_logger
from services.history_feed.models import backfills, claim_lines, dossiers

log = get_logger(__name__)

DOSSIER_NAME = re.compile(r"dossiers/([A-Za-z0-9._~-]{1,90})")
MAX_REQUEST_ID_LENGTH = 64


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier, clamped to the month's end (29 Feb → 28 Feb)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def window_start(today: date, months: int) -> date:
    return months_before(today, months)


def check_dossier_name(name: str, field: str) -> str:
    if not DOSSIER_NAME.fullmatch(name):
        raise invalid_argument("INVALID_DOSSIER_NAME", "Expected dossiers/{dossier}.", field)
    return name


@dataclass(frozen=True)
class DossierHistory:
    dossier: str
    patient_ins: str
    since_date: date


async def find_dossier(session: AsyncSession, dossier: str) -> DossierHistory | None:
    row = (await session.execute(select(dossiers).where(dossiers.c.dossier == dossier))).first()
    if row is None:
        return None
    return DossierHistory(row.dossier, row.patient_ins, row.since_date)


async def count_lines(session: AsyncSession, ins: str, since: date) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(claim_lines)
        .where(claim_lines.c.patient_ins == ins, claim_lines.c.care_date >= since)
    )
    return int(result.scalar_one())


async def backfill(
    sessions: async_sessionmaker[AsyncSession],
    *,
    dossier: str,
    patient_ins: str,
    since_date: date | None,
    request_id: str,
    today: date,
    window_months: int,
) -> history_pb2.BackfillDossierResponse:
    """Mark the record's INS and start date; idempotent per request id and per record."""
    check_dossier_name(dossier, "name")
    ins = kit_ins.validate(patient_ins, "patient_ins")
    if not request_id:
        raise invalid_argument("REQUEST_ID_REQUIRED", "request_id is required.", "request_id")
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise invalid_argument(
            "REQUEST_ID_INVALID",
            f"request_id is at most {MAX_REQUEST_ID_LENGTH} characters.",
            "request_id",
        )
    oldest = window_start(today, window_months)
    since = max(since_date or oldest, oldest)
    care_history = f"{dossier}/careHistory"
    try:
        async with sessions() as session, session.begin():
            done = (
                await session.execute(select(backfills).where(backfills.c.request_id == request_id))
            ).first()
            if done is not None:
                return history_pb2.BackfillDossierResponse(
                    care_history=f"{done.dossier}/careHistory",
                    materialized_count=done.materialized_count,
                    already_present_count=done.already_present_count,
                )
            current = await find_dossier(session, dossier)
            visible = await count_lines(session, ins, since)
            if current is None:
                await session.execute(
                    dossiers.insert().values(
                        dossier=dossier, patient_ins=ins, since_date=since, create_time=utcnow()
                    )
                )
                materialized, present = visible, 0
            else:
                if current.patient_ins != ins:
                    raise failed_precondition(
                        "DOSSIER_INS_MISMATCH", "This record belongs to another INS."
                    )
                present = await count_lines(session, ins, max(current.since_date, oldest))
                if since < current.since_date:
                    await session.execute(
                        dossiers.update()
                        .where(dossiers.c.dossier == dossier)
                        .values(since_date=since)
                    )
                materialized = max(visible - present, 0)
            await session.execute(
                backfills.insert().values(
                    request_id=request_id,
                    dossier=dossier,
                    materialized_count=materialized,
                    already_present_count=present,
                    create_time=utcnow(),
                )
            )
    except IntegrityError:
        # A concurrent call with the same request id or record won: answer like a retry.
        return await backfill(
            sessions,
            dossier=dossier,
            patient_ins=patient_ins,
            since_date=since_date,
            request_id=request_id,
            today=today,
            window_months=window_months,
        )
    log.info("backfilled", dossier=dossier, materialized=materialized, present=present)
    return history_pb2.BackfillDossierResponse(
        care_history=care_history,
        materialized_count=materialized,
        already_present_count=present,
    )
