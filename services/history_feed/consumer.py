"""Durable JetStream consumer of `dmp.records.dossier.created`.

Written here because no shared consumer helper existed in `kit/` when this
service was built. Each event backfills its record with the event id as the
request id, then is acked: a redelivery (crash before the ack) answers from
the stored backfill. An event that can never succeed (bad INS, malformed
name) is terminated instead of looping; a transient failure is nak'ed with
a delay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dmp.records.v1 import events_pb2
from kit import nats as kit_nats
from kit.consumer import MessageTelemetry
from kit.errors import ServiceError
from kit.logs import get_logger

log = get_logger(__name__)

DOSSIER_CREATED = "dmp.records.dossier.created"
FETCH_BATCH = 32
FETCH_TIMEOUT_S = 1.0
RETRY_DELAY_S = 2.0
MAX_DELIVER = 20

Handler = Callable[[events_pb2.DossierCreated], Awaitable[None]]


class DossierCreatedConsumer:
    """Pulls events in batches and hands each to `handler`."""

    def __init__(self, js: JetStreamContext, durable: str, handler: Handler) -> None:
        self._js = js
        self._durable = durable
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._telemetry = MessageTelemetry(durable)

    async def start(self) -> None:
        spec = kit_nats.STREAMS["records"]
        await kit_nats.ensure_stream(self._js, spec)
        subscription = await self._js.pull_subscribe(
            DOSSIER_CREATED,
            durable=self._durable,
            stream=spec.name,
            config=ConsumerConfig(
                durable_name=self._durable,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=MAX_DELIVER,
                filter_subject=DOSSIER_CREATED,
            ),
        )
        self._subscription = subscription
        self._task = asyncio.create_task(self._run(subscription), name="dossier-created")

    async def stop(self) -> None:
        """Stop fetching and unsubscribe, so the connection drains at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: retry
                log.warning("consumer_fetch_failed", error_type=type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            for message in messages:
                await self._handle(message)

    async def _handle(self, message: Msg) -> None:
        headers = dict(message.headers or {})
        event_id = headers.get("Nats-Msg-Id", "")
        with self._telemetry.message(message.subject, headers, event_id) as processing:
            processing.outcome = await self._process(message)

    async def _process(self, message: Msg) -> str:
        """Handle, then ack / nak / term; returns the outcome (kit.consumer.OUTCOMES)."""
        try:
            event = events_pb2.DossierCreated.FromString(message.data)
        except DecodeError:
            log.error("event_malformed", subject=message.subject)
            await message.term()
            return "rejected"
        try:
            await self._handler(event)
        except ServiceError as exc:
            if exc.code.name in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                log.error("event_refused", event_id=event.header.event_id, reason=exc.reason)
                await message.term()
                return "rejected"
            log.warning("event_retry", event_id=event.header.event_id, reason=exc.reason)
            await message.nak(delay=RETRY_DELAY_S)
            return "retry"
        except Exception as exc:
            log.warning("event_retry", event_id=event.header.event_id, error=type(exc).__name__)
            await message.nak(delay=RETRY_DELAY_S)
            return "retry"
        await message.ack()
        return "ack"
