"""Token buckets: a flood from one card, session or client address cannot starve the others.

Authenticated callers have one bucket per principal (`Caller.key`). Calls
without a credential (login, sign-up, recovery, token refresh) have one bucket
per client address, with their own, lower, limits: `client_address` keys an
IPv4 address as is and an IPv6 address by its prefix (a /64 by default, what
one subscriber is usually given), since a single host can pick any address in
its prefix.

Memory is bounded. Buckets are kept least recently used first; a bucket that
has refilled to its burst is the same as no bucket, so such buckets are
dropped as they reach the front (no state is lost). Past `max_buckets` the
least recently used bucket is dropped whatever its level: whoever controls
that many addresses is beyond a per-address limit anyway, and the table never
outgrows its cap.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable

from kit import clock as kit_clock
from kit.errors import resource_exhausted

REASON = "RATE_LIMITED"
_MAX_BUCKETS = 100_000
UNKNOWN_ADDRESS = "unknown"


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        clock: Callable[[], float] = kit_clock.monotonic,
        *,
        max_buckets: int = _MAX_BUCKETS,
        message: str = "Too many requests; retry later.",
    ) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._max = max_buckets
        self._message = message
        # key -> (tokens, time of the last update), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> None:
        """Spend one token of `key`, or raise RESOURCE_EXHAUSTED RATE_LIMITED with RetryInfo."""
        now = self._clock()
        self._drop_full(now)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.popitem(last=False)
            tokens = self._burst
        else:
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise resource_exhausted(
                REASON, self._message, retry_after_s=(1.0 - tokens) / self._rate
            )
        self._buckets[key] = (tokens - 1.0, now)

    def _drop_full(self, now: float) -> None:
        """Forget the least recently used buckets that have refilled (amortized O(1))."""
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            if tokens + (now - at) * self._rate < self._burst:
                return
            del self._buckets[key]


def client_address(peer: str, ipv6_prefix: int = 64) -> str:
    """The rate-limit key of a gRPC peer (`context.peer()`): the address without its port.

    gRPC writes `ipv4:203.0.113.7:51234` and `ipv6:[2001:db8::1]:51234`, the brackets
    percent-encoded by recent versions (`ipv6:%5B::1%5D:51234`). An IPv4-mapped IPv6
    address counts as its IPv4 address; other IPv6 addresses by their `ipv6_prefix`
    network. A peer of another form (a Unix socket) shares one bucket: `unknown`.
    """
    scheme, _, rest = urllib.parse.unquote(peer).partition(":")
    if scheme == "ipv4":
        host = rest.rpartition(":")[0]
    elif scheme == "ipv6" and rest.startswith("["):
        host = rest[1 : rest.find("]")].partition("%")[0]  # no zone id
    else:
        return UNKNOWN_ADDRESS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        bits = 128 - ipv6_prefix
        return f"{ipaddress.IPv6Address(int(address) >> bits << bits)}/{ipv6_prefix}"
    return str(address)
