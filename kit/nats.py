"""NATS connection and JetStream stream provisioning.

Each service provisions the stream it publishes to at start-up, so a fresh
nats-server (tests, `make run`) needs no manual set-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

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


async def connect(url: str, name: str) -> Client:
    """Connect with endless reconnects: a NATS restart must not kill a service.

    The first connection is retried the same way (nats-py applies `max_reconnect_attempts`
    to it, every `reconnect_time_wait`): this returns once NATS answers, so a caller needs
    no retry loop of its own.
    """
    return await nats.connect(
        servers=[url],
        name=f"dmp-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=_connection_error,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    """Create the stream, or update it when its config changed.

    `replicas` > 1 on a clustered JetStream (production: 3 nodes) keeps events
    through the loss of a node.
    """
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
        await js.add_stream(config)
        log.info("stream_created", stream=spec.name)
        return
    try:
        await js.update_stream(config)
    except BadRequestError as exc:  # e.g. an immutable setting changed: keep running
        log.warning("stream_update_refused", stream=spec.name, error=str(exc.description))
