"""Durable JetStream consumers: at-least-once delivery, ack after the handler's commit.

A service consuming another's events (consent's record projection, notify,
the gateway cache) runs one `DurableConsumer` per subscription. The handler
does its work in its own transaction and returns; only then is the message
acked, so a crash between commit and ack redelivers the message and the
handler must be idempotent (de-duplicate on `Delivery.event_id`, the
`Nats-Msg-Id` of the outbox). A failing handler gets the message again with
backoff; after `max_deliver` attempts it is terminated and logged (and
published to the dead-letter subject if one is configured).

The consumer starts even when the source stream does not exist yet (the
owning service may start later): it retries the subscription in the
background.

Each message is processed in a consumer span that continues the trace of the
publication (W3C headers), and counted by outcome with its processing time
(`MessageTelemetry`, also used by consumers written without this class). The
consumer's backlog (`num_pending`) is sampled for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind

from kit.logs import get_logger
from kit.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_DURATION,
    CONSUMER_FAILURES,
    CONSUMER_MESSAGES,
    CONSUMER_PENDING,
)
from kit.tracing import extract_context, tracer

log = get_logger(__name__)
_tracer = tracer(__name__)


#: How a message ended: acked, nak'ed for a retry, terminated after its last attempt,
#: terminated as never processable, or an error escaping the handling itself.
OUTCOMES = ("ack", "retry", "dead", "rejected", "error")


class Processing:
    """The outcome of one message, set by the code that acks / naks / terminates it."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = "error"


class MessageTelemetry:
    """Consumer span and metrics of the messages of one durable consumer."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self._duration = CONSUMER_DURATION.labels(consumer=consumer)
        self._failures = CONSUMER_FAILURES.labels(consumer=consumer)
        self._outcomes = {
            o: CONSUMER_MESSAGES.labels(consumer=consumer, outcome=o) for o in OUTCOMES
        }

    @contextlib.contextmanager
    def message(
        self, subject: str, headers: Mapping[str, str], event_id: str
    ) -> Iterator[Processing]:
        """Span (child of the publisher's) and metrics around the handling of one message."""
        started = time.perf_counter()
        processing = Processing()
        with _tracer.start_as_current_span(
            f"process {subject}",
            context=extract_context(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "messaging.consumer.group.name": self.consumer,
                "messaging.message.id": event_id,
            },
        ) as span:
            try:
                yield processing
            finally:
                outcome = processing.outcome
                span.set_attribute("dmp.consumer.outcome", outcome)
                self._duration.observe(time.perf_counter() - started)
                self._outcomes[outcome].inc()
                if outcome != "ack":
                    self._failures.inc()


class PermanentFailureError(Exception):
    """Raised by a handler for a message that can never succeed (undecodable): not retried."""


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer on a stream."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 8
    batch: int = 64
    fetch_timeout_s: float = 1.0
    backoff_s: tuple[float, ...] = (0.2, 1.0, 2.0, 5.0, 10.0)
    #: If set, terminated messages are republished there (with their headers).
    dead_letter_subject: str = ""
    #: How often the consumer's backlog is read from the server for the lag gauges.
    lag_sample_s: float = 15.0


@dataclass(frozen=True)
class Delivery:
    """A message as the handler sees it."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    event_id: str
    num_delivered: int
    stream_sequence: int


Handler = Callable[[Delivery], Awaitable[None]]


class DurableConsumer:
    """Pulls batches from a durable consumer and hands each message to `handler`."""

    def __init__(self, js: JetStreamContext, spec: ConsumerSpec, handler: Handler) -> None:
        self._js = js
        self._spec = spec
        self._handler = handler
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._subscribed = asyncio.Event()
        self._telemetry = MessageTelemetry(spec.durable)
        self._pending = CONSUMER_PENDING.labels(stream=spec.stream, consumer=spec.durable)
        self._ack_pending = CONSUMER_ACK_PENDING.labels(stream=spec.stream, consumer=spec.durable)
        self._next_sample = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self._spec.durable}")

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    @property
    def spec(self) -> ConsumerSpec:
        return self._spec

    async def info(self) -> ConsumerInfo | None:
        """The server's view of the consumer (pending, acknowledged floor); None before it
        is subscribed. Tests wait on its acknowledged floor to know a message was handled."""
        return None if self._sub is None else await self._sub.consumer_info()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._sub is not None:
            # Unsubscribe now: a connection drain would otherwise wait on the pull request.
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        spec = self._spec
        config = ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            filter_subject=spec.filter_subject,
        )
        delay = 0.2
        while True:
            try:
                sub = await self._js.pull_subscribe(
                    spec.filter_subject, durable=spec.durable, stream=spec.stream, config=config
                )
                self._subscribed.set()
                log.info("consumer_subscribed", stream=spec.stream, durable=spec.durable)
                return sub
            except asyncio.CancelledError:
                raise
            except (NotFoundError, nats.errors.Error, OSError) as exc:
                log.info(
                    "consumer_waiting_for_stream",
                    stream=spec.stream,
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _run(self) -> None:
        sub = self._sub = await self._subscribe()
        while True:
            if time.monotonic() >= self._next_sample:
                await self.sample_lag()
            try:
                messages = await sub.fetch(self._spec.batch, timeout=self._spec.fetch_timeout_s)
            except asyncio.CancelledError:
                raise
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                continue
            except Exception as exc:  # NATS away: keep trying
                log.warning("consumer_fetch_failed", error_type=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        """Run the handler for one message, then ack / nak with backoff / terminate."""
        headers = dict(msg.headers or {})
        meta = msg.metadata
        delivered = int(meta.num_delivered or 1)
        delivery = Delivery(
            subject=msg.subject,
            data=msg.data,
            headers=headers,
            event_id=headers.get("Nats-Msg-Id", ""),
            num_delivered=delivered,
            stream_sequence=int(meta.sequence.stream) if meta.sequence else 0,
        )
        with self._telemetry.message(msg.subject, headers, delivery.event_id) as processing:
            try:
                await self._handler(delivery)
            except asyncio.CancelledError:
                raise
            except PermanentFailureError:
                processing.outcome = "rejected"
                log.warning("consumer_message_rejected", subject=msg.subject, id=delivery.event_id)
                await self._terminate(msg, headers)
                return
            except Exception as exc:
                if delivered >= self._spec.max_deliver:
                    processing.outcome = "dead"
                    log.error(
                        "consumer_message_dead",
                        subject=msg.subject,
                        id=delivery.event_id,
                        error_type=type(exc).__name__,
                    )
                    await self._terminate(msg, headers)
                    return
                processing.outcome = "retry"
                backoff = self._spec.backoff_s
                delay = backoff[min(delivered, len(backoff)) - 1] if backoff else None
                log.warning(
                    "consumer_handler_failed",
                    subject=msg.subject,
                    id=delivery.event_id,
                    attempt=delivered,
                    error_type=type(exc).__name__,
                )
                with contextlib.suppress(Exception):
                    await msg.nak(delay=delay)
                return
            await msg.ack()
            processing.outcome = "ack"

    async def sample_lag(self) -> int | None:
        """Read num_pending / num_ack_pending from the server into the gauges."""
        self._next_sample = time.monotonic() + self._spec.lag_sample_s
        if self._sub is None:
            return None
        try:
            info = await self._sub.consumer_info()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS away: keep the last sample
            log.debug("consumer_lag_unavailable", error_type=type(exc).__name__)
            return None
        pending = int(info.num_pending or 0)
        self._pending.set(pending)
        self._ack_pending.set(int(info.num_ack_pending or 0))
        return pending

    async def _terminate(self, msg: Msg, headers: dict[str, str]) -> None:
        if self._spec.dead_letter_subject:
            with contextlib.suppress(Exception):
                dl_headers = {k: v for k, v in headers.items() if k != "Nats-Msg-Id"}
                dl_headers["Dmp-Original-Subject"] = msg.subject
                await self._js.publish(self._spec.dead_letter_subject, msg.data, headers=dl_headers)
        with contextlib.suppress(Exception):
            await msg.term()
