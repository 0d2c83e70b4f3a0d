"""SQL of history_feed's reads and record marks (the bulk line writes are `writers.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.history_feed.models import claim_lines, dossiers

c = claim_lines.c


@dataclass(frozen=True)
class DossierHistory:
    """A record's mark: whose lines it shows, from which date."""

    dossier: str
    patient_ins: str
    since_date: date


async def find_dossier(session: AsyncSession, dossier: str) -> DossierHistory | None:
    row = (await session.execute(select(dossiers).where(dossiers.c.dossier == dossier))).first()
    if row is None:
        return None
    return DossierHistory(row.dossier, row.patient_ins, row.since_date)


async def find_dossier_of(session: AsyncSession, ins: str) -> DossierHistory | None:
    """The record of the patient `ins` (one record per INS)."""
    row = (await session.execute(select(dossiers).where(dossiers.c.patient_ins == ins))).first()
    if row is None:
        return None
    return DossierHistory(row.dossier, row.patient_ins, row.since_date)


async def mark_dossier(
    session: AsyncSession, dossier: str, ins: str, since: date, now: datetime
) -> None:
    """A new record's mark; a concurrent mark of the same record is IntegrityError."""
    await session.execute(
        dossiers.insert().values(
            dossier=dossier, patient_ins=ins, since_date=since, create_time=now
        )
    )


async def move_start(session: AsyncSession, dossier: str, since: date) -> None:
    await session.execute(
        dossiers.update().where(dossiers.c.dossier == dossier).values(since_date=since)
    )


async def count_lines(session: AsyncSession, ins: str, since: date) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(claim_lines)
        .where(c.patient_ins == ins, c.care_date >= since)
    )
    return int(result.scalar_one())


@dataclass(frozen=True)
class LineQuery:
    """The lines of one INS from `since`, narrowed by a validated filter."""

    ins: str
    since: date
    until: date | None = None
    kinds: frozenset[int] = frozenset()
    atc_prefix: str = ""


async def last_receive_time(session: AsyncSession, q: LineQuery) -> datetime | None:
    """When the newest line of the INS from `since` arrived (whatever the other filters)."""
    query = select(func.max(c.receive_time)).where(c.patient_ins == q.ins, c.care_date >= q.since)
    value: datetime | None = (await session.execute(query)).scalar_one()
    return value


async def lines(session: AsyncSession, q: LineQuery, limit: int) -> list[tuple[bytes, datetime]]:
    """(payload, receive time) of the matching lines, newest care date first."""
    conditions: list[ColumnElement[bool]] = [c.patient_ins == q.ins, c.care_date >= q.since]
    if q.until is not None:
        conditions.append(c.care_date <= q.until)
    if q.kinds:
        conditions.append(c.kind.in_(sorted(q.kinds)))
    if q.atc_prefix:
        conditions.append(c.atc_code.like(q.atc_prefix + "%"))
    rows = await session.execute(
        select(c.payload, c.receive_time)
        .where(*conditions)
        .order_by(c.care_date.desc(), c.line_id)
        .limit(limit)
    )
    return [(bytes(row.payload), row.receive_time) for row in rows]
