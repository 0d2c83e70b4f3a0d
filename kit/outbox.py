"""Transactional outbox and its relay to JetStream.

A service writes its event row in the same transaction as the change it
describes, so an event is published if and only if the change committed. The
relay publishes rows in id order with `Nats-Msg-Id` = event id, so a relay
that crashes after publishing but before marking the row is de-duplicated by
JetStream within the stream's duplicate window.

Tracing: the row keeps the W3C context of the transaction that wrote it, and
the relay's publish span continues it (and travels in the NATS headers), so
consumers join the trace of the call that caused the event. The relay also
samples its backlog (row count, age of the oldest row) for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import timedelta

from google.protobuf.message import Message
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    Column,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import BigIntPK, UTCDateTime, is_sqlite, utcnow
from kit.logs import get_logger
from kit.metrics import (
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
    OUTBOX_UNPUBLISHED,
)
from kit.tracing import extract_context, inject_headers, tracer

log = get_logger(__name__)
_tracer = tracer(__name__)

OUTBOX_TABLE = "outbox"


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table, declared in the owning service's metadata."""
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", Text, nullable=False, default="{}"),
        Column("created_at", UTCDateTime, nullable=False),
        Column("published_at", UTCDateTime, nullable=True),
        Index("ix_outbox_unpublished", "published_at", "id"),
    )


def new_event_id() -> str:
    return uuid.uuid4().hex


async def add_event(
    session: AsyncSession,
    table: Table,
    subject: str,
    payload: Message,
    event_id: str | None = None,
) -> str:
    """Queue an event inside the caller's transaction; returns its id.

    Payloads carry identifiers only, never medical content.
    """
    eid = event_id or new_event_id()
    await session.execute(
        table.insert().values(
            event_id=eid,
            subject=subject,
            payload=payload.SerializeToString(deterministic=True),
            headers=json.dumps(inject_headers()),
            created_at=utcnow(),
        )
    )
    return eid


class OutboxRelay:
    """Publishes committed outbox rows to JetStream, oldest first."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        js: JetStreamContext,
        *,
        database_url: str,
        batch_size: int = 200,
        poll_interval_s: float = 0.2,
        retention: timedelta = timedelta(days=1),
        service: str = "",
        lag_sample_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._js = js
        self._batch = batch_size
        self._poll = poll_interval_s
        self._retention = retention
        self._skip_locked = not is_sqlite(database_url)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        label = service or table.name
        self._published = OUTBOX_PUBLISHED.labels(service=label)
        self._failures = OUTBOX_PUBLISH_FAILURES.labels(service=label)
        self._unpublished = OUTBOX_UNPUBLISHED.labels(service=label)
        self._oldest_age = OUTBOX_OLDEST_AGE.labels(service=label)
        self._lag_sample_s = lag_sample_s
        self._next_sample = 0.0

    def notify(self) -> None:
        """Wake the relay right after a commit instead of waiting for the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        cycles = 0
        while True:
            try:
                published = await self.publish_pending()
                cycles += 1
                if cycles % 1000 == 0:
                    await self.prune()
                if time.monotonic() >= self._next_sample:
                    await self.sample_lag()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or database away: keep the rows, retry later
                log.warning("outbox_relay_retry", error_type=type(exc).__name__)
                published = 0
                await asyncio.sleep(1.0)
            if published == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        t = self._table
        async with self._sessions() as session, session.begin():
            query = (
                select(t.c.id, t.c.event_id, t.c.subject, t.c.payload, t.c.headers)
                .where(t.c.published_at.is_(None))
                .order_by(t.c.id)
                .limit(self._batch)
            )
            if self._skip_locked:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            acks = []
            for row in rows:
                headers = json.loads(row.headers)
                with _tracer.start_as_current_span(
                    f"publish {row.subject}",
                    context=extract_context(headers),
                    kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "nats", "messaging.message.id": row.event_id},
                ):
                    headers.update(inject_headers())
                    headers["Nats-Msg-Id"] = row.event_id
                    acks.append(
                        asyncio.ensure_future(
                            self._js.publish(row.subject, row.payload, headers=headers)
                        )
                    )
            results = await asyncio.gather(*acks, return_exceptions=True)
            done = [
                row.id
                for row, res in zip(rows, results, strict=True)
                if not isinstance(res, BaseException)
            ]
            if done:
                await session.execute(
                    update(t).where(t.c.id.in_(done)).values(published_at=utcnow())
                )
            failed = len(rows) - len(done)
            self._published.inc(len(done))
            if failed:
                self._failures.inc(failed)
                log.warning("outbox_publish_failed", failed=failed)
            return len(done)

    async def sample_lag(self) -> tuple[int, float]:
        """Count unpublished rows and the oldest one's age; set the gauges; return both."""
        self._next_sample = time.monotonic() + self._lag_sample_s
        t = self._table
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
        self._unpublished.set(int(count))
        self._oldest_age.set(age)
        return int(count), age

    async def prune(self) -> int:
        """Delete rows published longer ago than the retention."""
        t = self._table
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(t).where(t.c.published_at < utcnow() - self._retention)
            )
            return int(getattr(result, "rowcount", 0) or 0)
