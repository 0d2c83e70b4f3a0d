"""Vaccination booster reminders: a durable schedule in notify's own database.

Why a table and not NATS: a booster is due months or years after the
vaccination, far beyond the streams' 30-day retention and any redelivery
delay a consumer could be given; and a schedule must survive restarts of
notify and of NATS alike. So the vaccination event is consumed at once (and
acked once its row committed), and the reminder waits as a row of
`vaccination_reminders`, where a restart finds it.

Firing: a poller (every `reminder_poll_s`, reading `kit.clock`) takes the
`scheduled` rows whose `due_time` has passed and, in one transaction per
batch, flips each to `queued` with a compare-and-set and writes its
notification rows (the same rows, keyed per (event, recipient, channel), that
every other notification uses; the dispatcher sends them once, with its own
lease). Two replicas polling together: on PostgreSQL the rows are taken
`FOR UPDATE SKIP LOCKED`, and in any case only the one whose compare-and-set
changed the row queues it; a crash before the commit leaves the row
`scheduled` and nothing queued, so the next poll does it again. No lease is
needed on the reminder itself: nothing happens outside that transaction.

Cancelling: a vaccination that is the booster of an earlier one (records
computes this, so the event names no vaccine) marks the earlier reminder
`cancelled` if it has not been queued yet; if the earlier vaccination's own
event has not been consumed yet, a `cancelled` row waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction, utcnow
from kit.logs import get_logger
from kit.writelock import WriteLock
from services.notify import models
from services.notify.consumed import Booster
from services.notify.templates import PARIS

log = get_logger(__name__)
r = models.vaccination_reminders.c

#: The notifications of a reminder are keyed by the vaccination event's id plus this.
KEY_SUFFIX = ".booster"


@dataclass(frozen=True)
class ReminderPolicy:
    """When, relative to the booster date, the patient is reminded."""

    lead_days: int = 7
    hour: int = 9

    def due_time(self, booster: date) -> datetime:
        """`lead_days` before the booster date, at `hour` in Paris."""
        return datetime.combine(booster - timedelta(days=self.lead_days), time(self.hour), PARIS)


def key_of(event_id: str) -> str:
    return event_id + KEY_SUFFIX


def shown_time(booster: date) -> datetime:
    """The instant the message dates the booster by (noon in Paris on that day)."""
    return datetime.combine(booster, time(12), PARIS)


async def schedule(
    session: AsyncSession,
    *,
    dossier: str,
    event_id: str,
    booster: Booster,
    payload: bytes,
    policy: ReminderPolicy,
    now: datetime,
) -> bool:
    """Record the reminder of `booster.vaccination` (if any) and cancel those it fulfils.

    Idempotent: a redelivered event finds its rows. True when a reminder is already due.
    """
    for earlier in booster.fulfils:
        done = await session.execute(
            update(models.vaccination_reminders)
            .where(r.vaccination == earlier, r.status == models.REMINDER_SCHEDULED)
            .values(status=models.REMINDER_CANCELLED, update_time=now)
        )
        if getattr(done, "rowcount", 0) == 0 and await _row(session, earlier) is None:
            # Its own event is still to come: it will find the reminder cancelled.
            await _insert(
                session,
                vaccination=earlier,
                dossier=dossier,
                status=models.REMINDER_CANCELLED,
                due_time=now,
                now=now,
            )
    if booster.due_date is None or await _row(session, booster.vaccination) is not None:
        return False
    if booster.due_date < now.astimezone(PARIS).date():
        return False  # a vaccination recorded after its booster date: nothing to remind
    due = policy.due_time(booster.due_date)
    await _insert(
        session,
        vaccination=booster.vaccination,
        dossier=dossier,
        status=models.REMINDER_SCHEDULED,
        due_time=due,
        now=now,
        event_id=event_id,
        booster_date=booster.due_date.isoformat(),
        payload=payload,
    )
    return due <= now


async def _row(session: AsyncSession, vaccination: str) -> object | None:
    return (
        await session.execute(select(r.id).where(r.vaccination == vaccination))
    ).scalar_one_or_none()


async def _insert(
    session: AsyncSession,
    *,
    vaccination: str,
    dossier: str,
    status: str,
    due_time: datetime,
    now: datetime,
    event_id: str | None = None,
    booster_date: str | None = None,
    payload: bytes | None = None,
) -> None:
    await session.execute(
        models.vaccination_reminders.insert().values(
            vaccination=vaccination,
            dossier=dossier,
            event_id=event_id,
            due_time=due_time,
            booster_date=booster_date,
            status=status,
            source_payload=payload,
            create_time=now,
            update_time=now,
        )
    )


@dataclass(frozen=True)
class DueReminder:
    dossier: str
    event_id: str
    booster_date: date
    payload: bytes


#: Writes the notification rows of a due reminder in the caller's transaction.
QueueReminder = Callable[[AsyncSession, DueReminder], Awaitable[int]]


class ReminderScheduler:
    """Polls for due reminders and queues their notifications (see module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        queue: QueueReminder,
        on_queued: Callable[[], None],
        poll_s: float,
        skip_locked: bool,
        write_lock: WriteLock | None = None,
        batch: int = 50,
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._on_queued = on_queued
        self._poll = poll_s
        self._skip_locked = skip_locked
        self._write_lock = write_lock or WriteLock(enabled=False)
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="notify-reminders")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                queued = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: try again at the next poll
                log.warning("reminders_poll_failed", error_type=type(exc).__name__)
                queued = 0
            if queued == self._batch:
                continue  # more may be due right now
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def run_due(self) -> int:
        """Queue the notifications of every reminder due now (one batch); how many."""
        now = utcnow()
        queued = 0
        async with self._write_lock, transaction(self._sessions) as session:
            query = (
                select(r.id, r.dossier, r.event_id, r.booster_date, r.source_payload)
                .where(r.status == models.REMINDER_SCHEDULED, r.due_time <= now)
                .order_by(r.due_time, r.id)
                .limit(self._batch)
            )
            if self._skip_locked:
                query = query.with_for_update(skip_locked=True)
            for row in (await session.execute(query)).all():
                taken = await session.execute(
                    update(models.vaccination_reminders)
                    .where(r.id == row.id, r.status == models.REMINDER_SCHEDULED)
                    .values(status=models.REMINDER_QUEUED, update_time=now)
                )
                if getattr(taken, "rowcount", 0) != 1:
                    continue  # another replica queued it
                due = DueReminder(
                    dossier=row.dossier,
                    event_id=row.event_id,
                    booster_date=date.fromisoformat(row.booster_date),
                    payload=bytes(row.source_payload),
                )
                await self._queue(session, due)
                queued += 1
        if queued:
            log.info("reminders_queued", reminders=queued)
            self._on_queued()
        return queued
