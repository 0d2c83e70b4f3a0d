"""SQL of `contact_preferences`: one row per patient."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import contact_preferences as table


async def get(session: AsyncSession, patient: str) -> RowMapping | None:
    result = await session.execute(select(table).where(table.c.patient == patient))
    return result.mappings().first()


async def upsert(
    session: AsyncSession,
    patient: str,
    *,
    email: str | None,
    mobile_phone: str | None,
    choices: str,
    now: datetime,
) -> None:
    """Update the patient's row, or insert it; a concurrent first insert is IntegrityError."""
    values = {"email": email, "mobile_phone": mobile_phone, "choices": choices, "update_time": now}
    result = await session.execute(update(table).where(table.c.patient == patient).values(**values))
    if not result.rowcount:  # type: ignore[attr-defined]
        await session.execute(table.insert().values(patient=patient, create_time=now, **values))
