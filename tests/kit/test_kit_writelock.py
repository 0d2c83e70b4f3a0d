"""kit.writelock: SQLite's one writer queued in the process, urgent writers first."""

from __future__ import annotations

import asyncio

from kit.writelock import WriteLock


async def _queued(lock: WriteLock, order: list[str], name: str, *, urgent: bool) -> None:
    await lock.acquire(urgent=urgent)
    order.append(name)
    lock.release()


async def _settle() -> None:
    """Let every ready task run up to its next wait (no timer involved)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_only_sqlite_serializes() -> None:
    assert WriteLock.for_database("sqlite+aiosqlite:///x.db")._enabled
    off = WriteLock.for_database("postgresql+asyncpg://db/x")
    async with off, off:  # a no-op lock never waits, even held
        pass


async def test_waiters_are_served_urgent_first_then_in_arrival_order() -> None:
    lock = WriteLock(enabled=True)
    order: list[str] = []
    await lock.acquire()
    tasks = [
        asyncio.create_task(_queued(lock, order, "normal-1", urgent=False)),
        asyncio.create_task(_queued(lock, order, "normal-2", urgent=False)),
        asyncio.create_task(_queued(lock, order, "urgent", urgent=True)),
    ]
    await _settle()
    assert order == []  # all queued behind the holder
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["urgent", "normal-1", "normal-2"]


async def test_a_cancelled_waiter_passes_the_lock_on() -> None:
    lock = WriteLock(enabled=True)
    order: list[str] = []
    await lock.acquire()
    doomed = asyncio.create_task(lock.acquire())
    after = asyncio.create_task(_queued(lock, order, "after", urgent=False))
    await _settle()
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    lock.release()
    await after
    assert order == ["after"]
    async with lock:  # free again
        pass
