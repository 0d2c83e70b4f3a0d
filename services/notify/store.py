"""Delivery rows: claiming a request id, recording attempts and the outcome.

A request id is claimed by inserting its row as pending; a second call with
the same id finds the row instead of sending again. A failed row (or a
pending one abandoned by a crashed process) can be claimed again, with a
compare-and-set update so that two concurrent retries never both send.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction, utcnow
from kit.errors import invalid_argument
from services.notify import models
from services.notify.models import deliveries


@dataclass(frozen=True)
class Claim:
    row: RowMapping
    #: True when this call owns the delivery and must send; False: already done or in flight.
    owned: bool


async def _get(session: AsyncSession, request_id: str) -> RowMapping | None:
    result = await session.execute(select(deliveries).where(deliveries.c.request_id == request_id))
    return result.mappings().first()


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    *,
    request_id: str,
    channel: str,
    kind: str,
    purpose: str | None,
    masked_destination: str,
    takeover_after: timedelta,
) -> Claim:
    """Own the delivery of `request_id`, or report the existing one."""
    now = utcnow()
    async with transaction(sessions) as session:
        existing = await _get(session, request_id)
    if existing is None:
        try:
            async with transaction(sessions) as session:
                await session.execute(
                    deliveries.insert().values(
                        delivery_id=str(uuid.uuid4()),
                        request_id=request_id,
                        channel=channel,
                        kind=kind,
                        purpose=purpose,
                        masked_destination=masked_destination,
                        status=models.STATUS_PENDING,
                        attempts=0,
                        create_time=now,
                        update_time=now,
                    )
                )
                row = await _get(session, request_id)
                assert row is not None
                return Claim(row, owned=True)
        except IntegrityError:
            # A concurrent call with the same request id inserted first.
            async with transaction(sessions) as session:
                existing = await _get(session, request_id)
            assert existing is not None
    wanted = (channel, purpose, masked_destination)
    return await _reclaim(sessions, existing, wanted, now, takeover_after)


async def _reclaim(
    sessions: async_sessionmaker[AsyncSession],
    existing: RowMapping,
    wanted: tuple[str, str | None, str],
    now: datetime,
    takeover_after: timedelta,
) -> Claim:
    if (existing["channel"], existing["purpose"], existing["masked_destination"]) != wanted:
        raise invalid_argument(
            "REQUEST_ID_REUSED",
            "This request id was already used for another message.",
            "request_id",
        )
    status = existing["status"]
    abandoned = status == models.STATUS_PENDING and existing["update_time"] <= now - takeover_after
    if status != models.STATUS_FAILED and not abandoned:
        return Claim(existing, owned=False)
    async with transaction(sessions) as session:
        result = await session.execute(
            update(deliveries)
            .where(
                deliveries.c.id == existing["id"],
                deliveries.c.status == status,
                deliveries.c.attempts == existing["attempts"],
            )
            .values(status=models.STATUS_PENDING, update_time=now, last_error=None)
        )
        row = await _get(session, existing["request_id"])
    assert row is not None
    return Claim(row, owned=result.rowcount == 1)  # type: ignore[attr-defined]


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
