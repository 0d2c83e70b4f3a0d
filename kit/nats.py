"""NATS connection and JetStream stream provisioning.

Each service provisions the stream it publishes to at start-up, so a fresh
nats-server (tests, `make run`) needs no manual set-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from kit import clock as kit_clock
from kit.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream owned by one service."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 30 * 24 * 3600
    duplicate_window_s: float = 10 * 60


# One stream per publishing domain: subjects follow dmp.<service>.<entity>.<verb>.
STREAMS: dict[str, StreamSpec] = {
    "identity": StreamSpec("DMP_IDENTITY", ("dmp.identity.>",)),
    "records": StreamSpec("DMP_RECORDS", ("dmp.records.>",)),
    "consent": StreamSpec("DMP_CONSENT", ("dmp.consent.>",)),
    "notify": StreamSpec("DMP_NOTIFY", ("dmp.notify.>",)),
    "history_feed": StreamSpec("DMP_HISTORY", ("dmp.history.>",)),
}


async def _connection_error(exc: Exception) -> None:
    """One line per failed (re)connection attempt, without traceback.

    nats-py's default callback logs every attempt with its traceback; while
    NATS is away that is two rendered tracebacks a second, which in console
    logging kept the event loop so busy that a SIGTERM never completed.
    """
    log.warning("nats_connection_error", error_type=type(exc).__name__)


def server_urls(url: str) -> list[str]:
    """`DMP_NATS_URL` names one server or a cluster's nodes, comma-separated
    (`nats://n1:4222,nats://n2:4222,nats://n3:4222`): a client that knows every node
    reconnects to a surviving one when its own goes away."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no NATS server URL")
    return urls


async def connect(
    url: str,
    name: str,
    *,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect with endless reconnects: a NATS restart must not kill a service.

    The first connection is retried the same way (nats-py applies `max_reconnect_attempts`
    to it, every `reconnect_time_wait`): this returns once NATS answers, so a caller needs
    no retry loop of its own. `url` may list a cluster's nodes (`server_urls`); core
    subscriptions missed what was published while the client was away, so a caller whose
    state follows core messages passes `reconnected_cb` (and `disconnected_cb`) to catch up.
    """
    options: dict[str, Any] = {}
    if reconnected_cb is not None:
        options["reconnected_cb"] = reconnected_cb
    if disconnected_cb is not None:
        options["disconnected_cb"] = disconnected_cb
    return await nats.connect(
        servers=server_urls(url),
        name=f"dmp-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=_connection_error,
        **options,
    )


async def ensure_stream(
    js: JetStreamContext, spec: StreamSpec, replicas: int = 1, *, within_s: float = 60.0
) -> None:
    """Create the stream, or update it when its config changed.

    `replicas` > 1 on a clustered JetStream (production: 3 nodes) keeps events
    through the loss of a node. On a cluster, creating an R3 stream needs its nodes to agree,
    and the replicas of the services that publish to it (and history_feed, which makes
    records' stream too) start together: a create may time out, be refused while the
    cluster elects its leaders, or race another replica's. Tried again until `within_s`.
    """
    deadline = kit_clock.monotonic() + within_s
    delay = 0.2
    while True:
        try:
            await _ensure_stream_once(js, spec, replicas)
            return
        except (NatsTimeoutError, ServiceUnavailableError, BadRequestError) as exc:
            if kit_clock.monotonic() + delay > deadline:
                raise
            log.warning("stream_ensure_retry", stream=spec.name, error_type=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _ensure_stream_once(js: JetStreamContext, spec: StreamSpec, replicas: int) -> None:
    config = StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)  # a replica that lost a race: BadRequest, tried again
        log.info("stream_created", stream=spec.name)
        return
    try:
        await js.update_stream(config)
    except BadRequestError as exc:  # e.g. an immutable setting changed: keep running
        log.warning("stream_update_refused", stream=spec.name, error=str(exc.description))
