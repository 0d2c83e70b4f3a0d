"""Appending to a record's access log: one chain per record, one writer at a time.

Appends are serialized per record in this process (striped locks; SQLite's
single writer: one lock) and protected across replicas by the unique
(dossier, sequence) constraint: a replica that took the same sequence makes the
commit fail, and the caller retries (`Runtime.write`). The head of each chain
is cached so an append costs one insert.

Decisions are appended in group commits (`grouped`): the decisions on one record that
arrive while its previous transaction is running wait together and are appended, in
arrival order, in the next transaction, one COMMIT for all; each caller gets its answer
only after that COMMIT (a decision is durable before it leaves consent). The chain is
built exactly as one entry per transaction would build it (same order, same hashes).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction
from services.consent import accesslog, repository
from services.consent.cache import Lru

_LOCK_STRIPES = 256
_GROUP_ATTEMPTS = 5
T = TypeVar("T")
#: One caller's part of a group commit: its work and where its answer goes.
_Waiter = tuple[Callable[["LogAppender"], Awaitable[Any]], "asyncio.Future[tuple[Any, bool]]"]


class LogWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache_size: int,
        *,
        single_writer: bool = False,
    ) -> None:
        self._sessions = sessions
        # SQLite has one writer: queueing here beats its busy-retry sleeps by far.
        self._single_writer = asyncio.Lock() if single_writer else None
        self._heads: Lru[str, tuple[int, str]] = Lru(cache_size)
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        # Per record: the decisions waiting for its next group commit.
        self._waiting: dict[str, list[_Waiter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def lock(self, dossier: str) -> asyncio.Lock:
        if self._single_writer is not None:
            return self._single_writer
        return self._locks[zlib.crc32(dossier.encode()) % _LOCK_STRIPES]

    async def _head(self, session: AsyncSession, dossier: str) -> tuple[int, str]:
        cached = self._heads.get(dossier)
        if cached is not None:
            return cached
        head = await repository.log_head(session, dossier)
        return head or (0, accesslog.GENESIS_HASH)

    @asynccontextmanager
    async def appending(self, dossier: str) -> AsyncIterator[LogAppender]:
        """A transaction in which `append` chains entries to `dossier`'s log."""
        async with self.lock(dossier):
            appender = LogAppender(dossier)
            try:
                async with transaction(self._sessions) as session:
                    appender.session = session
                    appender.head = await self._head(session, dossier)
                    yield appender
            except IntegrityError:
                self._heads.pop(dossier)
                raise
            if appender.head[0]:
                self._heads.put(dossier, appender.head)

    async def grouped(
        self, dossier: str, work: Callable[[LogAppender], Awaitable[T]]
    ) -> tuple[T, bool]:
        """`work`'s result once the transaction holding its appends has committed, and
        whether that transaction queued an outbox event.

        The first caller for a record starts the group's task: it waits for the record's
        lock, takes every work queued meanwhile and runs them all in one transaction. The
        task, not a caller, runs the group, so a caller that goes away (its RPC cancelled)
        does not take the others' decisions with it. A work that fails (other than a
        replica's race on the sequence, retried as `Runtime.write` does) makes the group
        run again one transaction per work, so it fails alone."""
        future: asyncio.Future[tuple[Any, bool]] = asyncio.get_running_loop().create_future()
        queue = self._waiting.get(dossier)
        if queue is None:
            queue = self._waiting[dossier] = []
            task = asyncio.create_task(self._lead(dossier, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append((work, future))
        result, emitted = await future
        return result, emitted

    def waiting(self, dossier: str) -> int:
        """Decisions on `dossier` queued for its next group commit."""
        return len(self._waiting.get(dossier, ()))

    async def _lead(self, dossier: str, queue: list[_Waiter]) -> None:
        try:
            async with self.lock(dossier):
                # Later arrivals form the next group.
                if self._waiting.get(dossier) is queue:
                    del self._waiting[dossier]
                await self._commit_group(dossier, queue)
        except BaseException as exc:
            for _, future in queue:
                if not future.done():
                    future.set_exception(exc)
            raise
        finally:
            if self._waiting.get(dossier) is queue:
                del self._waiting[dossier]

    async def _commit_group(self, dossier: str, group: list[_Waiter]) -> None:
        try:
            results, emitted = await self._run(dossier, [work for work, _ in group])
        except Exception as exc:
            if len(group) == 1:
                if not group[0][1].done():
                    group[0][1].set_exception(exc)
                return
            for member in group:  # find who failed: each alone
                await self._commit_group(dossier, [member])
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():  # its caller may have gone: the decision stays logged
                future.set_result((result, emitted))

    async def _run(
        self, dossier: str, works: list[Callable[[LogAppender], Awaitable[Any]]]
    ) -> tuple[list[Any], bool]:
        """The works in one transaction (the caller holds the record's lock); retried from
        the start when a replica took the same log sequence."""
        for attempt in range(_GROUP_ATTEMPTS):
            appender = LogAppender(dossier)
            try:
                async with transaction(self._sessions) as session:
                    appender.session = session
                    appender.head = await self._head(session, dossier)
                    results = [await work(appender) for work in works]
            except IntegrityError:
                self._heads.pop(dossier)
                if attempt == _GROUP_ATTEMPTS - 1:
                    raise
                continue
            if appender.head[0]:
                self._heads.put(dossier, appender.head)
            return results, appender.emitted
        raise AssertionError("unreachable")


class LogAppender:
    """Chains entries within one transaction (see `LogWriter.appending`)."""

    def __init__(self, dossier: str) -> None:
        self.dossier = dossier
        self.session: AsyncSession = None  # type: ignore[assignment]
        self.head: tuple[int, str] = (0, accesslog.GENESIS_HASH)
        self.emitted = False  # an outbox event was queued in this transaction

    async def append(self, values: Mapping[str, Any]) -> dict[str, Any]:
        sequence, previous = self.head
        row = dict(values)
        row["dossier"] = self.dossier
        row["sequence"] = sequence + 1
        row["previous_hash"] = previous
        row["entry_hash"] = accesslog.entry_hash(row)
        await repository.insert_log_entry(self.session, row)
        self.head = (row["sequence"], row["entry_hash"])
        return row

    async def first_access(self, rpps: str, now: datetime) -> bool:
        """Record `rpps`'s first allowed access; False if it was already recorded."""
        return await repository.first_access(self.session, self.dossier, rpps, now)
