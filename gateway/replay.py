"""The assertion ids every gateway replica has seen: a NATS JetStream key-value bucket.

`gateway.assertion.ReplayCache` remembers the ids one replica saw; behind a load balancer
an establishment could present the same assertion once to each replica. This store closes
that: each id is claimed with KV `create` (a write that succeeds only if the key does not
exist, atomic on the server), so exactly one replica accepts an id; the others answer
ASSERTION_REPLAYED. The bucket's TTL (longest assertion lifetime plus twice the leeway)
forgets ids once their assertions have expired everywhere.

Keys are SHA-256(FINESS "/" jti) in hex (KV keys allow fewer characters than a `jti`), the
value is empty: the bucket holds no user data. Fail closed: until the bucket is reachable
(start-up, NATS away, a slow answer), establishment calls are refused UNAVAILABLE
ASSERTION_REPLAY_UNCHECKED; patient and card calls are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from kit import nats as kit_nats
from kit.errors import unauthenticated, unavailable
from kit.logs import get_logger

log = get_logger(__name__)
BUCKET = "DMP_ASSERTION_IDS"


def _unchecked() -> Exception:
    return unavailable(
        "ASSERTION_REPLAY_UNCHECKED",
        "User assertions cannot be checked for replay now; retry with a new one later.",
    )


class SharedReplayStore:
    """Claims assertion ids in a KV bucket shared by the gateway replicas."""

    def __init__(
        self,
        url: str,
        ttl_s: float,
        *,
        timeout_s: float = 1.0,
        bucket: str = BUCKET,
        replicas: int = 1,
    ) -> None:
        self._url = url
        self._replicas = replicas
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._bucket = bucket
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        """Connect and open (or create) the bucket in the background."""
        self._task = asyncio.create_task(self._open(), name="assertion-replay-store")

    async def _open(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._bind()
                self.ready.set()
                log.info("assertion_replay_store_ready", bucket=self._bucket, ttl_s=self._ttl)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep trying; claims fail closed meanwhile
                log.warning("assertion_replay_store_retry", error_type=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _bind(self) -> KeyValue:
        """Open the bucket, creating it when missing (first replica, or a NATS that lost it)."""
        if self._nc is None:
            self._nc = await kit_nats.connect(self._url, "gateway-assertions")
        js = self._nc.jetstream()
        try:
            kv = await js.key_value(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=self._bucket,
                    history=1,
                    ttl=self._ttl,
                    # On disk: a restarted NATS node keeps the ids claimed before it stopped.
                    storage=StorageType.FILE,
                    # R3 on a 3-node cluster: a lost node keeps neither the bucket nor
                    # the claims away (DMP_NATS_STREAM_REPLICAS).
                    replicas=self._replicas,
                )
            )
        self._kv = kv
        return kv

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

    async def claim(self, issuer: str, jti: str) -> None:
        """Accept `jti` of `issuer` once across every replica; ASSERTION_REPLAYED after."""
        kv = self._kv
        if kv is None:
            raise _unchecked()
        key = hashlib.sha256(f"{issuer}/{jti}".encode()).hexdigest()
        try:
            await asyncio.wait_for(self._create(kv, key), self._timeout)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise unauthenticated(
                "ASSERTION_REPLAYED", "This user assertion was already used."
            ) from exc
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("assertion_replay_store_failed", error_type=type(exc).__name__)
            raise _unchecked() from exc

    async def _create(self, kv: KeyValue, key: str) -> None:
        """Claim `key`; if the bucket is gone (NATS restarted or purged it), bind it again
        and claim once more, so one lost bucket is not a permanent refusal."""
        try:
            await kv.create(key, b"")
        except nats.js.errors.KeyWrongLastSequenceError:
            raise
        except nats.errors.Error:
            await (await self._bind()).create(key, b"")
