"""SQL of `contact_preferences`: one row per patient."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import models
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
    values = {
        "email": email,
        "mobile_phone": mobile_phone,
        "choices": choices,
        "update_time": now,
        "source": models.SOURCE_PATIENT,
    }
    result = await session.execute(update(table).where(table.c.patient == patient).values(**values))
    if not result.rowcount:  # type: ignore[attr-defined]
        await session.execute(table.insert().values(patient=patient, create_time=now, **values))


async def give(
    session: AsyncSession,
    patient: str,
    *,
    email: str | None,
    mobile_phone: str | None,
    source: str,
    now: datetime,
) -> bool:
    """Contact data given for `patient` (an event): stored unless a stronger source holds the
    row; a value not given keeps the stored one. Applying it twice changes nothing.

    True when the row was written. The caller's transaction serializes it with the intake.
    """
    row = await get(session, patient)
    if row is None:
        await session.execute(
            table.insert().values(
                patient=patient,
                email=email,
                mobile_phone=mobile_phone,
                choices="{}",
                create_time=now,
                update_time=now,
                source=source,
            )
        )
        return True
    if models.SOURCE_RANK.get(str(row["source"]), 3) > models.SOURCE_RANK[source]:
        return False
    values: dict[str, object] = {"source": source}
    if email:
        values["email"] = email
    if mobile_phone:
        values["mobile_phone"] = mobile_phone
    if all(row[k] == v for k, v in values.items()):
        return False
    values["update_time"] = now
    await session.execute(update(table).where(table.c.patient == patient).values(**values))
    return True
