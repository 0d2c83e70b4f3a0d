"""One writing transaction at a time within the process, on SQLite only.

SQLite has a single writer; concurrent transactions of one process otherwise
meet in SQLite's busy handler, which sleeps in steps of up to 100 ms. Queuing
them on an asyncio lock instead keeps latency at the cost of a real
transaction each. PostgreSQL needs none of this: the lock is then a no-op
(`for_database`).

A writer whose commit must not wait behind the others takes the lock with
priority (`urgent()`): notify's send outcomes, since between a relay's
acceptance and the commit of `sent` a crash means a second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType

from kit.db import is_sqlite


class WriteLock:
    """FIFO lock with an urgent queue served first; a no-op when not `enabled`."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @classmethod
    def for_database(cls, database_url: str) -> WriteLock:
        """Enabled on SQLite only."""
        return cls(enabled=is_sqlite(database_url))

    async def acquire(self, *, urgent: bool = False) -> None:
        if not self._enabled:
            return
        if not self._held:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the lock straight to the next waiter, urgent ones first."""
        if not self._enabled:
            return
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False

    @contextlib.asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        await self.acquire(urgent=True)
        try:
            yield
        finally:
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
