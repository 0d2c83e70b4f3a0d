"""Per-principal token buckets: a flood from one card or session cannot starve the others."""

from __future__ import annotations

import time
from collections.abc import Callable

from kit.errors import resource_exhausted

_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str) -> None:
        """Spend one token of `key`, or raise RESOURCE_EXHAUSTED with RetryInfo."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[key] = [self._burst, now]
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise resource_exhausted(
                "RATE_LIMITED",
                "Too many requests; retry later.",
                retry_after_s=(1.0 - tokens) / self._rate,
            )
        bucket[0] = tokens - 1.0
