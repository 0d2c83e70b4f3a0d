"""SQL of `notifications`: queued by the intake, claimed and marked by the dispatcher, listed.

A row is claimed with a compare-and-set (status, lease) under a claim token, so
replicas never send one row at once; its outcome is one statement guarded by
that token, so a dispatcher whose lease ran out cannot overwrite a takeover.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.notify import models
from services.notify.models import contact_preferences
from services.notify.models import notifications as n


async def recipients_of(session: AsyncSession, event_id: str) -> set[tuple[str, str]]:
    """(recipient, channel) of the rows already queued for this event."""
    rows = await session.execute(select(n.c.recipient, n.c.channel).where(n.c.event_id == event_id))
    return {(r.recipient, r.channel) for r in rows}


async def retry_failed(session: AsyncSession, event_id: str, now: datetime) -> None:
    """The event's failed rows pending again, with fresh attempts (a replayed dead letter)."""
    await session.execute(
        update(n)
        .where(and_(n.c.event_id == event_id, n.c.status == models.STATUS_FAILED))
        .values(
            status=models.STATUS_PENDING,
            attempts=0,
            next_attempt_time=now,
            claim_token=None,
            lease_until=None,
            update_time=now,
        )
    )


async def queue(
    session: AsyncSession,
    *,
    event_id: str,
    recipient: str,
    channel: str,
    kind: str,
    variant: str,
    urgent: bool,
    occur_time: datetime,
    source_subject: str,
    source_payload: bytes,
    masked_destination: str,
    trace_context: str,
    now: datetime,
) -> None:
    """A pending row, due now."""
    await session.execute(
        n.insert().values(
            notification_id=str(uuid.uuid4()),
            event_id=event_id,
            recipient=recipient,
            channel=channel,
            kind=kind,
            variant=variant,
            urgent=urgent,
            occur_time=occur_time,
            source_subject=source_subject,
            source_payload=source_payload,
            masked_destination=masked_destination,
            status=models.STATUS_PENDING,
            attempts=0,
            dead_count=0,
            next_attempt_time=now,
            create_time=now,
            update_time=now,
            trace_context=trace_context,
        )
    )


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(n.c.status == models.STATUS_PENDING, n.c.next_attempt_time <= now),
        and_(n.c.status == models.STATUS_SENDING, n.c.lease_until < now),
    )


async def claim_due(
    session: AsyncSession,
    *,
    limit: int,
    now: datetime,
    lease_until: datetime,
    token: str,
    skip_locked: bool,
) -> list[RowMapping]:
    """Up to `limit` due rows (urgent first) now `sending` under `token`, with the contacts."""
    query = select(n.c.id).where(_due(now)).order_by(n.c.urgent.desc(), n.c.id).limit(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids = [r.id for r in (await session.execute(query)).all()]
    if not ids:
        return []
    await session.execute(
        update(n)
        .where(n.c.id.in_(ids), _due(now))
        .values(
            status=models.STATUS_SENDING,
            claim_token=token,
            lease_until=lease_until,
            update_time=now,
        )
    )
    # The contacts come with the claim: sends then never wait for a connection.
    result = await session.execute(
        select(n, contact_preferences.c.email, contact_preferences.c.mobile_phone)
        .outerjoin(contact_preferences, contact_preferences.c.patient == n.c.recipient)
        .where(n.c.claim_token == token)
    )
    return list(result.mappings().all())


async def record_outcome(
    connection: AsyncConnection, row_id: int, claim_token: str, values: dict[str, object]
) -> int:
    """Mark a claimed row; 0 when its claim was taken over meanwhile."""
    result = await connection.execute(
        update(n).where(n.c.id == row_id, n.c.claim_token == claim_token).values(**values)
    )
    return int(result.rowcount)


async def page_for(
    session: AsyncSession, recipient: str, before_id: int | None, limit: int
) -> list[RowMapping]:
    """A recipient's rows, newest first, below `before_id` (the previous page's last)."""
    query = select(n).where(n.c.recipient == recipient)
    if before_id is not None:
        query = query.where(n.c.id < before_id)
    rows = await session.execute(query.order_by(n.c.id.desc()).limit(limit))
    return list(rows.mappings().all())
