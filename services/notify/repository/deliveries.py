"""SQL of `deliveries`: one row per one-time code handed (or to be handed) to a provider.

The row tracks the sending only (pending → sent / failed, attempts); which
request it answers is `kit.idempotency`'s table. A failed row, or a pending one
abandoned by a crashed process, is taken over with a compare-and-set update so
that two concurrent retries never both send.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction, utcnow
from services.notify import models
from services.notify.models import deliveries


async def get(session: AsyncSession, delivery_id: str) -> RowMapping | None:
    result = await session.execute(
        select(deliveries).where(deliveries.c.delivery_id == delivery_id)
    )
    return result.mappings().first()


async def insert_pending(  # noqa: PLR0917 - one argument per column
    session: AsyncSession,
    delivery_id: str,
    request_id: str,
    channel: str,
    purpose: str,
    masked_destination: str,
    now: datetime,
) -> RowMapping:
    await session.execute(
        deliveries.insert().values(
            delivery_id=delivery_id,
            request_id=request_id,
            channel=channel,
            kind=models.KIND_ONE_TIME_CODE,
            purpose=purpose,
            masked_destination=masked_destination,
            status=models.STATUS_PENDING,
            attempts=0,
            create_time=now,
            update_time=now,
        )
    )
    row = await get(session, delivery_id)
    assert row is not None
    return row


async def take_over(
    sessions: async_sessionmaker[AsyncSession],
    row: RowMapping,
    now: datetime,
    abandoned_after: timedelta,
) -> RowMapping | None:
    """`row` again as pending if it failed or was abandoned and no one took it first."""
    status = row["status"]
    abandoned = status == models.STATUS_PENDING and row["update_time"] <= now - abandoned_after
    if status != models.STATUS_FAILED and not abandoned:
        return None
    async with transaction(sessions) as session:
        result = await session.execute(
            update(deliveries)
            .where(
                deliveries.c.id == row["id"],
                deliveries.c.status == status,
                deliveries.c.attempts == row["attempts"],
            )
            .values(status=models.STATUS_PENDING, update_time=now, last_error=None)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return await get(session, row["delivery_id"])


async def record_failure(
    sessions: async_sessionmaker[AsyncSession], row_id: int, attempts: int, error: str
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            update(deliveries)
            .where(deliveries.c.id == row_id)
            .values(attempts=attempts, last_error=error[:64], update_time=utcnow())
        )


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    row_id: int,
    *,
    sent: bool,
    attempts: int | None,
    error: str | None,
) -> None:
    """Final status; `attempts=None` keeps the count recorded by `record_failure`."""
    now = utcnow()
    values: dict[str, object] = {
        "status": models.STATUS_SENT if sent else models.STATUS_FAILED,
        "update_time": now,
        "last_error": None if sent else (error or "unknown")[:64],
    }
    if attempts is not None:
        values["attempts"] = attempts
    if sent:
        values["send_time"] = now
    async with transaction(sessions) as session:
        await session.execute(update(deliveries).where(deliveries.c.id == row_id).values(**values))


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(
            (await session.execute(select(func.count()).select_from(deliveries))).scalar_one()
        )
