"""One writing transaction at a time within the process, on SQLite only.

SQLite has a single writer; concurrent transactions of one process (the
intake, the dispatcher's claims and outcomes) otherwise meet in SQLite's busy
handler, which sleeps in steps of up to 100 ms. Queuing them on an asyncio
lock instead keeps latency at the cost of a real transaction each. PostgreSQL
needs none of this: the lock is then a no-op.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class WriteLock:
    def __init__(self, *, enabled: bool) -> None:
        self._lock = asyncio.Lock() if enabled else None

    async def __aenter__(self) -> None:
        if self._lock is not None:
            await self._lock.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            self._lock.release()
