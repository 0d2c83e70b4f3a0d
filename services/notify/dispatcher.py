"""Hands pending notification rows to SMTP / SMS, with retries and a dead-letter subject.

Life of a row: `pending` (written by the intake before the event is acked)
→ `sending` (claimed with a lease and a claim token, committed *before* the
provider is called) → `sent`; or back to `pending` with an exponential,
jittered delay after a transient failure; or `failed` after
`notification_attempts` failures (or a permanent one), once its event has been
published to `dmp.notify.deadletter.<source>`.

Guarantee. A row is marked `sent` only after the provider accepted it, and
a `sent` row is never claimed again, so a redelivered event, a restarted or
a second replica never sends it twice. The one window left is a crash after
the provider accepted the message and before `sent` is committed: the row's
lease then expires and it is sent again (at least once, never lost). Every
resend carries the same Message-ID (`<notification id@domain>`, fixed per
event × recipient × channel) and the SMS the same reference, so a relay,
provider or mail client that de-duplicates on it shows the patient one message.

That window is kept as short as it can be: the outcome is committed by the
send itself, in its own transaction, as soon as the relay's 250 arrives
(before the SMTP QUIT; on SQLite ahead of any queued intake or claim); a
send's slot is only freed once its outcome is committed, so at most
`dispatch_concurrency` messages are ever accepted-but-unrecorded.

Graceful stop (SIGTERM) closes the window entirely: no new claims, the sends
in flight finish and commit their outcome, then the process exits; a restart
then sends nothing twice. Only sends still running when the drain budget runs
out are abandoned to their lease (at least once, as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from opentelemetry.trace import SpanKind
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dmp.notify.v1 import notify_pb2
from kit.db import transaction, utcnow
from kit.directory import DirectoryClient
from kit.logs import get_logger
from kit.tracing import extract_context, tracer
from kit.writelock import WriteLock
from services.notify import event_templates, models, naming, validation
from services.notify.consumed import source_of
from services.notify.delivery import RetryPolicy, describe, is_transient
from services.notify.email_sender import EmailSender
from services.notify.repository import notifications
from services.notify.sms import SmsProvider

log = get_logger(__name__)
_tracer = tracer(__name__)

Publisher = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


class ContactRemovedError(Exception):
    """The patient removed the contact since the notification was queued."""


def deadletter_subject(source_subject: str) -> str:
    source = source_of(source_subject)
    return source.deadletter_subject if source else "dmp.notify.deadletter.unknown"


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        outcomes: AsyncEngine,
        email: EmailSender,
        sms: SmsProvider,
        policy: RetryPolicy,
        lease: timedelta,
        concurrency: int,
        poll_s: float,
        skip_locked: bool,
        publish: Publisher | None = None,
        write_lock: WriteLock | None = None,
        directory: DirectoryClient | None = None,
    ) -> None:
        self._write_lock = write_lock or WriteLock(enabled=False)
        self._directory = directory
        self._sessions = sessions
        self._outcomes = outcomes
        self._email = email
        self._sms = sms
        self._policy = policy
        self._lease = lease
        self._concurrency = concurrency
        self._claim_chunk = max(1, concurrency // 4)
        self._poll = poll_s
        self._skip_locked = skip_locked
        self.publish = publish
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="notify-dispatcher")

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def stop(self, drain_s: float) -> None:
        """Claim nothing more, let the sends in flight commit their outcome, for up to `drain_s`.

        The claim loop is asked to stop rather than cancelled: cancelled in the
        middle of a claim, it could leave rows `sending` that nobody sends
        (until their lease expires).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        # Sends in flight at the signal count as drained even when they finish while the
        # claiming loop is still stopping (before the wait below starts).
        at_signal = set(self._in_flight)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            _, running = await asyncio.wait({self._task}, timeout=drain_s)
            if running:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        draining = at_signal | set(self._in_flight)
        log.info("dispatch_draining", in_flight=len(draining))
        late: set[asyncio.Task[None]] = set()
        if draining:
            _, late = await asyncio.wait(draining, timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._email.aclose()
        log.info("dispatch_drained", finished=len(draining) - len(late), abandoned=len(late))

    async def _run(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._in_flight)
            claimed: list[RowMapping] = []
            # Claim in chunks rather than one row per finished send: fewer transactions.
            if free >= self._claim_chunk or (free > 0 and not self._in_flight):
                try:
                    claimed = await self.claim(free)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database away: retry later
                    log.warning("dispatch_claim_failed", error_type=type(exc).__name__)
                    await self._nap()
                    continue
            # Rows claimed are sent even when a stop came meanwhile: left alone,
            # they would wait for their lease to expire.
            for row in claimed:
                task = asyncio.create_task(self._deliver(row))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                continue  # more may be due right now
            await self._nap()

    async def _nap(self) -> None:
        """Until woken (new rows, a slot freed, a stop) or the next poll."""
        if self._stopping:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def claim(self, limit: int) -> list[RowMapping]:
        """Take up to `limit` due rows (urgent first); a compare-and-set keeps replicas apart."""
        now = utcnow()
        async with self._write_lock, transaction(self._sessions) as session:
            return await notifications.claim_due(
                session,
                limit=limit,
                now=now,
                lease_until=now + self._lease,
                token=str(uuid.uuid4()),
                skip_locked=self._skip_locked,
            )

    async def _deliver(self, row: RowMapping) -> None:
        try:
            await self._deliver_one(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recording failed (database away): the lease will expire
            log.error(
                "dispatch_failed",
                notification_id=row["notification_id"],
                error_type=type(exc).__name__,
            )

    async def _deliver_one(self, row: RowMapping) -> None:
        if row["attempts"] >= self._policy.attempts:
            # Out of attempts already: only the dead-letter publication is left to do.
            await self._dead(row, row["attempts"], row["last_error"] or "unknown")
            return
        started = time.perf_counter()
        attempts = row["attempts"] + 1
        try:
            masked = await self._send(row)
        except asyncio.CancelledError:
            raise
        except ContactRemovedError:
            await self._finish(
                row, status=models.STATUS_FAILED, attempts=attempts, error="NoContact"
            )
            log.info("notification_dropped", notification_id=row["notification_id"])
            return
        except Exception as exc:
            error = describe(exc)
            if is_transient(exc) and attempts < self._policy.attempts:
                delay = self._policy.delay(attempts)
                await self._finish(
                    row,
                    status=models.STATUS_PENDING,
                    attempts=attempts,
                    error=error,
                    next_attempt=utcnow() + timedelta(seconds=delay),
                )
                log.warning(
                    "notification_retry",
                    notification_id=row["notification_id"],
                    attempt=attempts,
                    error=error,
                    delay_s=round(delay, 3),
                )
                return
            await self._dead(row, attempts, error)
            return
        accepted = time.perf_counter()
        await self._finish(row, status=models.STATUS_SENT, attempts=attempts, masked=masked)
        done = time.perf_counter()
        log.info(
            "notification_sent",
            notification_id=row["notification_id"],
            kind=row["kind"],
            channel=row["channel"],
            attempt=attempts,
            ms=round((done - started) * 1000, 3),
            # Accepted by the provider but not yet recorded: the at-least-once window.
            unrecorded_ms=round((done - accepted) * 1000, 3),
        )

    async def _send(self, row: RowMapping) -> str:
        """Send in a span continuing the trace of the event that queued the row."""
        parent = extract_context(json.loads(row["trace_context"] or "{}"))
        with _tracer.start_as_current_span(
            f"send {row['channel']}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={"dmp.notification.kind": row["kind"], "dmp.channel": row["channel"]},
        ):
            return await self._send_now(row)

    async def _send_now(self, row: RowMapping) -> str:
        """Send with the contact read at claim time (the latest the patient set)."""
        kind = notify_pb2.NotificationKind.Value(row["kind"])
        # Who the notice names: the directory's cache, else one call bounded by its timeout.
        actor = await naming.resolve(self._directory, row["source_subject"], row["source_payload"])
        if row["channel"] == models.CHANNEL_EMAIL:
            address = row["email"]
            if not address:
                raise ContactRemovedError
            text = event_templates.email(
                kind, row["variant"], row["occur_time"], urgent=row["urgent"], actor=actor
            )
            await self._email.send(
                address,
                text,
                message_id=self._email.message_id(row["notification_id"]),
                urgent=row["urgent"],
            )
            return validation.mask(notify_pb2.CHANNEL_EMAIL, address)
        phone = row["mobile_phone"]
        if not phone:
            raise ContactRemovedError
        await self._sms.send(
            phone,
            event_templates.sms(kind, row["variant"], urgent=row["urgent"], actor=actor),
            reference=row["notification_id"],
        )
        return validation.mask(notify_pb2.CHANNEL_SMS, phone)

    async def _finish(
        self,
        row: RowMapping,
        *,
        status: str,
        attempts: int,
        error: str | None = None,
        masked: str | None = None,
        next_attempt: object = None,
        dead: bool = False,
    ) -> None:
        now = utcnow()
        values: dict[str, object] = {
            "status": status,
            "attempts": attempts,
            "claim_token": None,
            "lease_until": None,
            "update_time": now,
            "last_error": error[:64] if error else None,
        }
        if status == models.STATUS_SENT:
            values["send_time"] = now
        if masked is not None:
            values["masked_destination"] = masked
        if next_attempt is not None:
            values["next_attempt_time"] = next_attempt
        if dead:
            values["dead_count"] = row["dead_count"] + 1
        # The send slot stays taken until the outcome is committed: at most
        # `concurrency` messages are ever sent-but-not-recorded.
        count = await self._commit_outcome(row, values)
        if count != 1:
            # Our lease ran out and another dispatcher took the row over.
            log.warning("notification_lease_lost", notification_id=row["notification_id"])

    async def _commit_outcome(self, row: RowMapping, values: dict[str, object]) -> int:
        """Commit one outcome now, as one autocommitted statement; retry while the lease lasts.

        A `sent` that is not committed is a message sent again once the lease
        expires, so a failed commit (database restarting) is retried rather
        than given up at once.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lease.total_seconds() / 2
        delay = 0.05
        while True:
            try:
                async with self._write_lock.urgent(), self._outcomes.connect() as connection:
                    return await notifications.record_outcome(
                        connection, row["id"], row["claim_token"], values
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() + delay >= give_up:
                    raise
                log.warning(
                    "notification_outcome_retry",
                    notification_id=row["notification_id"],
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _dead(self, row: RowMapping, attempts: int, error: str) -> None:
        """Publish the source event to the dead-letter subject, then mark the row failed.

        In that order: a crash in between republishes the same dead letter
        (same `Nats-Msg-Id`, de-duplicated by JetStream), never loses it.
        """
        publish = self.publish
        if publish is None:
            await self._finish(
                row,
                status=models.STATUS_PENDING,
                attempts=attempts,
                error=error,
                next_attempt=utcnow() + timedelta(seconds=self._policy.backoff_max_s),
            )
            log.warning("deadletter_unavailable", notification_id=row["notification_id"])
            return
        headers = {
            "Nats-Msg-Id": f"dl.{row['notification_id']}.{row['dead_count'] + 1}",
            "Dmp-Original-Subject": row["source_subject"],
            "Dmp-Event-Id": row["event_id"],
            "Dmp-Dead-Reason": "delivery_failed",
            "Dmp-Notification-Id": row["notification_id"],
            "Dmp-Error": error[:64],
        }
        try:
            await publish(deadletter_subject(row["source_subject"]), row["source_payload"], headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("deadletter_publish_failed", error_type=type(exc).__name__)
            await self._finish(
                row,
                status=models.STATUS_PENDING,
                attempts=attempts,
                error=error,
                next_attempt=utcnow() + timedelta(seconds=self._policy.backoff_base_s),
            )
            return
        await self._finish(
            row, status=models.STATUS_FAILED, attempts=attempts, error=error, dead=True
        )
        log.error(
            "notification_dead",
            notification_id=row["notification_id"],
            kind=row["kind"],
            attempts=attempts,
            error=error,
        )
