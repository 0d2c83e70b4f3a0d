"""Revoked patient sessions, learnt from identity's `dmp.identity.session.revoked` events.

The gateway checks a patient access token locally (signature, expiry), so
without this a session ended by Logout, ChangePassword, RecoverCredentials or
a refresh-token reuse would keep working until its tokens expire. identity
writes one `SessionRevoked` per session through its outbox (so an event is
never lost, only late while NATS is away) into the JetStream stream
DMP_IDENTITY; every gateway replica reads it with its own ephemeral pull
consumer, without acks (the stream keeps the events, not the consumer).

- Start: the consumer delivers from `now - horizon` (the longest token
  lifetime plus a clock margin), so every revocation whose tokens may still be
  alive is replayed, including those made before this replica started. Until
  the consumer has no pending message, patient tokens are refused
  (UNAVAILABLE REVOCATIONS_NOT_READY) and the health stays NOT_SERVING.
- Live: a lingering pull request delivers an event as soon as identity's relay
  publishes it.
- Reconnect: NATS or the consumer gone (restart, network), the consumer is
  created again from the stream sequence after the last event applied (from
  `now - horizon` again if the stream went backwards).
- Staleness: the feed confirms it is in sync at least every
  `FETCH_TIMEOUT_S`; if it could not for `max_staleness_s`, patient tokens are
  refused (UNAVAILABLE REVOCATIONS_STALE) until it is back: a revocation made
  meanwhile could not reach this replica.
- Memory: session id -> forget-after (stream time of the event + horizon):
  after that every token of the session has expired. Entries are pruned as
  they pass; at most `max_entries` are kept. A revocation that does not fit
  is not forgotten silently: patient tokens are refused (UNAVAILABLE
  REVOCATIONS_OVERFLOW) until that revocation's forget-after has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dmp.identity.v1 import events_pb2
from kit import clock as kit_clock
from kit import nats as kit_nats
from kit.errors import unauthenticated, unavailable
from kit.logs import get_logger

log = get_logger(__name__)
SUBJECT = "dmp.identity.session.revoked"
STREAM = kit_nats.STREAMS["identity"].name
#: Clocks of NATS, identity and the gateway may disagree by this much (plus the verifier's
#: leeway on `exp`): kept on top of the longest token lifetime.
CLOCK_MARGIN_S = 60.0
#: A lingering pull request lasts this long; then the feed checks its consumer is still there.
FETCH_TIMEOUT_S = 1.0
_BATCH = 256
_PRUNE_EVERY_S = 30.0


class RevokedSessions:
    """The revoked sessions whose tokens may still be alive, and whether the list is complete."""

    def __init__(
        self,
        *,
        horizon_s: float,
        max_entries: int,
        max_staleness_s: float,
        clock: Callable[[], float] = kit_clock.timestamp,
        monotonic: Callable[[], float] = kit_clock.monotonic,
    ) -> None:
        self.horizon_s = horizon_s
        self._max = max_entries
        self._staleness = max_staleness_s
        self._clock = clock
        self._monotonic = monotonic
        self._forget: dict[str, float] = {}
        self._full_until = 0.0
        self._synced = float("-inf")
        self.ready = False

    def __len__(self) -> int:
        return len(self._forget)

    def revoke(self, session_id: str, revoked_at: float) -> None:
        """Remember a revocation until every token of the session has expired."""
        now = self._clock()
        forget = revoked_at + self.horizon_s
        if forget <= now:
            return
        if session_id not in self._forget and len(self._forget) >= self._max:
            self.prune()
            if len(self._forget) >= self._max:
                # Fail closed rather than forget: no patient token until this one has expired.
                if self._full_until < forget:
                    log.error("revocations_full", entries=len(self._forget), refuse_until=forget)
                self._full_until = max(self._full_until, forget)
                return
        self._forget[session_id] = max(forget, self._forget.get(session_id, 0.0))

    def prune(self) -> int:
        now = self._clock()
        gone = [sid for sid, until in self._forget.items() if until <= now]
        for sid in gone:
            del self._forget[sid]
        return len(gone)

    def synced(self) -> None:
        """The feed has just seen that nothing is pending: the list is complete now."""
        self._synced = self._monotonic()
        self.ready = True

    def check(self, session_id: str) -> None:
        """Raise unless tokens of `session_id` may be accepted now."""
        if not self.ready:
            raise unavailable(
                "REVOCATIONS_NOT_READY", "Patient sessions cannot be verified yet; retry."
            )
        if self._monotonic() - self._synced > self._staleness:
            raise unavailable(
                "REVOCATIONS_STALE", "Patient sessions cannot be verified now; retry later."
            )
        now = self._clock()
        if now < self._full_until:
            raise unavailable(
                "REVOCATIONS_OVERFLOW", "Patient sessions cannot be verified now; retry later."
            )
        until = self._forget.get(session_id)
        if until is not None and until > now:
            raise unauthenticated("SESSION_REVOKED", "This session has ended; log in again.")


class RevocationFeed:
    """Keeps a `RevokedSessions` up to date from JetStream, reconnecting forever."""

    def __init__(self, url: str, sessions: RevokedSessions, *, name: str = "gateway") -> None:
        self._url = url
        self._name = name
        self.sessions = sessions
        self._nc: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_seq = 0
        self._pending = 0
        self._next_prune = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-feed")

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    async def _run(self) -> None:
        delay = 0.2
        while True:
            sub: JetStreamContext.PullSubscription | None = None
            try:
                if self._nc is None or self._nc.is_closed:
                    self._nc = await kit_nats.connect(self._url, f"{self._name}-revocations")
                sub = await self._subscribe(self._nc.jetstream())
                delay = 0.2
                await self._pump(sub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, stream or consumer missing: start over
                log.warning("revocation_feed_retry", error_type=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            filter_subject=SUBJECT,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        resume = False
        if self._last_seq:
            stream = await js.stream_info(STREAM)
            resume = int(stream.state.last_seq or 0) >= self._last_seq
        if resume:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._last_seq + 1
        else:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            start = kit_clock.now() - timedelta(seconds=self.sessions.horizon_s)
            config.opt_start_time = start
        sub = await js.pull_subscribe(SUBJECT, stream=STREAM, config=config)
        info = await sub.consumer_info()
        self._pending = int(info.num_pending or 0)
        log.info(
            "revocation_feed_subscribed", resume_seq=config.opt_start_seq, pending=self._pending
        )
        if self._pending == 0:
            self._in_sync()
        return sub

    async def _pump(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            if kit_clock.monotonic() >= self._next_prune:
                self._next_prune = kit_clock.monotonic() + _PRUNE_EVERY_S
                self.sessions.prune()
            # Known backlog: take it in batches (returned at once); else one lingering request,
            # answered as soon as an event is published.
            batch = min(self._pending, _BATCH) if self._pending else 1
            try:
                messages = await sub.fetch(batch, timeout=FETCH_TIMEOUT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                # Nothing new: prove the consumer is still there (raises NotFoundError if not).
                info = await sub.consumer_info()
                self._pending = int(info.num_pending or 0)
                if self._pending == 0:
                    self._in_sync()
                continue
            for msg in messages:
                self._apply(msg)
            if messages:
                self._pending = int(messages[-1].metadata.num_pending or 0)
                if self._pending == 0:
                    self._in_sync()

    def _apply(self, msg: Msg) -> None:
        meta = msg.metadata
        self._last_seq = max(self._last_seq, int(meta.sequence.stream) if meta.sequence else 0)
        try:
            event = events_pb2.SessionRevoked.FromString(msg.data)
        except DecodeError:
            log.error("revocation_event_malformed", seq=self._last_seq)
            return
        if not event.session_id:
            log.error("revocation_event_malformed", seq=self._last_seq)
            return
        stored = meta.timestamp.timestamp() if meta.timestamp is not None else kit_clock.timestamp()
        self.sessions.revoke(event.session_id, stored)

    def _in_sync(self) -> None:
        first = not self.sessions.ready
        self.sessions.synced()
        if first:
            log.info("revocations_caught_up", revoked_sessions=len(self.sessions))
            self._ready.set()
