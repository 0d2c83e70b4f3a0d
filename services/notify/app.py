"""The notify service process.

One-time codes come by direct gRPC call and never depend on NATS: the
service serves them as soon as its database is up. Event notifications need
NATS, which is connected in the background (with retries), so a NATS outage
at start-up delays notifications but never logins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from kit import nats as kit_nats
from kit import pagination
from kit.consumer import ConsumerSpec, DurableConsumer
from kit.db import create_engine, is_sqlite
from kit.directory import DirectoryClient
from kit.logs import get_logger
from kit.server import ServiceApp
from kit.writelock import WriteLock
from services.notify.consumed import SOURCES
from services.notify.delivery import RetryPolicy
from services.notify.dispatcher import Dispatcher
from services.notify.email_sender import EmailSender
from services.notify.intake import Intake, queue_reminder
from services.notify.one_time_codes import OneTimeCodes
from services.notify.reminders import ReminderPolicy, ReminderScheduler
from services.notify.servicer import NotifyServicer
from services.notify.settings import NotifySettings
from services.notify.sms import SmsProvider, provider_from_settings

log = get_logger(__name__)


class NotifyApp(ServiceApp):
    name = "notify"

    def __init__(self, settings: NotifySettings) -> None:
        super().__init__(settings)
        self.notify_settings = settings
        self.email = EmailSender(settings)
        self.sms: SmsProvider = provider_from_settings(
            settings.sms_provider, settings.sms_sink_path
        )
        self.retry_policy = RetryPolicy(
            attempts=settings.delivery_attempts,
            backoff_base_s=settings.delivery_backoff_base_s,
            backoff_max_s=settings.delivery_backoff_max_s,
        )
        self.notification_policy = RetryPolicy(
            attempts=settings.notification_attempts,
            backoff_base_s=settings.notification_backoff_base_s,
            backoff_max_s=settings.notification_backoff_max_s,
        )
        self.pending_takeover = timedelta(seconds=settings.pending_takeover_s)
        # Names the professional in access notices and in ListNotifications.
        self.directory = DirectoryClient(
            "notify",
            settings.identity_target,
            settings.principal_key_id,
            settings.principal_key_bytes(),
            timeout_s=settings.directory_timeout_s,
        )
        self.dispatcher: Dispatcher | None = None
        self.reminders: ReminderScheduler | None = None
        self.codes: OneTimeCodes | None = None
        self._dispatch_engine: AsyncEngine | None = None
        self.consumers: list[DurableConsumer] = []
        self._events_task: asyncio.Task[None] | None = None
        self.events_ready = asyncio.Event()

    def needs_nats(self) -> bool:
        return False  # connected in the background by `_start_events`

    async def start(self) -> None:
        await super().start()
        cfg = self.notify_settings
        if not cfg.events_enabled:
            return
        self.write_lock = WriteLock.for_database(cfg.database_url)
        # Outcomes of sends go through their own pool, one connection per send
        # slot, each outcome a single autocommitted UPDATE: one round trip (one
        # thread hop on SQLite) between the relay's 250 and a durable `sent`,
        # never waiting for a connection held by event intake. No pre-ping (a
        # round trip more) and no reset on return (another): a failed
        # statement is retried by the dispatcher.
        self._dispatch_engine = create_engine(
            cfg.database_url,
            pool_size=cfg.dispatch_concurrency,
            max_overflow=2,
            pool_pre_ping=False,
            pool_reset_on_return=None,
            isolation_level="AUTOCOMMIT",
        )
        self.dispatcher = Dispatcher(
            self.db,
            outcomes=self._dispatch_engine,
            email=self.email,
            sms=self.sms,
            policy=self.notification_policy,
            lease=timedelta(seconds=cfg.sending_lease_s),
            concurrency=cfg.dispatch_concurrency,
            poll_s=cfg.dispatch_poll_s,
            skip_locked=not is_sqlite(cfg.database_url),
            write_lock=self.write_lock,
            directory=self.directory,
        )
        self.dispatcher.start()
        # The booster schedule is a table: it fires without NATS, after any restart.
        self.reminders = ReminderScheduler(
            self.db,
            queue=queue_reminder,
            on_queued=self.dispatcher.wake,
            poll_s=cfg.reminder_poll_s,
            skip_locked=not is_sqlite(cfg.database_url),
            write_lock=self.write_lock,
        )
        self.reminders.start()
        self._events_task = asyncio.create_task(self._start_events(), name="notify-events")

    async def _start_events(self) -> None:
        cfg = self.notify_settings
        # Waits for NATS as long as it takes: kit.nats.connect retries the first connection too.
        nc = await kit_nats.connect(cfg.nats_url, self.name)
        self.nc = nc
        js = self.js = nc.jetstream()
        while True:
            try:
                await kit_nats.ensure_stream(
                    js, kit_nats.STREAMS["notify"], replicas=cfg.nats_stream_replicas
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notify_stream_retry", error_type=type(exc).__name__)
                await asyncio.sleep(1.0)

        async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
            await js.publish(subject, data, headers=headers)

        assert self.dispatcher is not None
        self.dispatcher.publish = publish
        assert self.reminders is not None
        intake = Intake(
            self.db,
            self.dispatcher.wake,
            self.write_lock,
            reminder_policy=ReminderPolicy(cfg.reminder_lead_days, cfg.reminder_hour),
            on_reminder_due=self.reminders.wake,
        )
        backoff = tuple(cfg.consumer_backoff_s)
        notify_stream = kit_nats.STREAMS["notify"].name
        for source in SOURCES:
            for stream, durable, subject in (
                (
                    kit_nats.STREAMS[source.stream_owner].name,
                    f"{cfg.consumer_prefix}-{source.name}",
                    source.filter_subject,
                ),
                (
                    notify_stream,
                    f"{cfg.consumer_prefix}-replay-{source.name}",
                    source.replay_filter,
                ),
            ):
                spec = ConsumerSpec(
                    stream=stream,
                    durable=durable,
                    filter_subject=subject,
                    max_deliver=cfg.consumer_max_deliver,
                    ack_wait_s=cfg.consumer_ack_wait_s,
                    backoff_s=backoff,
                    dead_letter_subject=source.deadletter_subject,
                )
                consumer = DurableConsumer(js, spec, intake.handle)
                consumer.start()
                self.consumers.append(consumer)
        self.events_ready.set()
        log.info("event_consumers_started", consumers=len(self.consumers))

    async def wait_events_ready(self) -> None:
        """Tests: wait until every consumer is subscribed."""
        await self.events_ready.wait()
        for consumer in self.consumers:
            await consumer.wait_subscribed()

    async def stop(self) -> None:
        """Drain: take no new events, finish the sends in flight and record them, then close.

        An event being taken in when its consumer stops is rolled back and not
        acked: it comes again to the next process, which finds any rows it
        already made. The sends get most of `shutdown_grace_s` (all but 3 s,
        at least half), the rest being kept for closing connections and the
        interpreter's own exit, so the process is gone within its grace period
        even when the relay stalls.
        """
        log.info("notify_stopping", consumers=len(self.consumers))
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        await self._stop_consumers()
        if self.reminders is not None:
            await self.reminders.stop()
        if self.dispatcher is not None:
            grace = self.notify_settings.shutdown_grace_s
            await self.dispatcher.stop(max(grace / 2, grace - 3.0))
        await self.email.aclose()
        await self.directory.close()
        if self._dispatch_engine is not None:
            await self._dispatch_engine.dispose()
        await super().stop()

    async def _stop_consumers(self, patience_s: float = 1.0) -> None:
        """Stop every consumer, cancelling again those whose task outlives a cancellation.

        A SIGTERM once never completed here; a consumer stop is therefore never
        awaited unbounded: a task still running after `patience_s` is
        cancelled anew (the cancellation may have been absorbed by the NATS
        client), and after five rounds the process goes on stopping.
        """
        stops = {asyncio.create_task(c.stop()): c for c in self.consumers}
        for _ in range(5):
            if not stops:
                return
            _, running = await asyncio.wait(stops, timeout=patience_s)
            stops = {asyncio.create_task(stops[t].stop()): stops[t] for t in running}
            if stops:
                log.warning("consumer_stop_slow", consumers=len(stops))
        if stops:
            log.error("consumer_stop_abandoned", consumers=len(stops))

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        codes = self.codes = OneTimeCodes(
            self.db,
            email=self.email,
            sms=self.sms,
            policy=self.retry_policy,
            takeover_after=self.pending_takeover,
        )
        tokens = pagination.PageTokens.for_service(self.settings, "notify")
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(
            NotifyServicer(self.db, codes, tokens, self.directory), server
        )
        return [notify_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name]
