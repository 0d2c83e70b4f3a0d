"""Appending to a record's access log: one chain per record, one writer at a time.

Appends are serialized per record in this process (striped locks; SQLite's
single writer: one lock) and protected across replicas by the unique
(dossier, sequence) constraint: a replica that took the same sequence makes the
commit fail, and the caller retries (`Runtime.write`). The head of each chain
is cached so an append costs one insert.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import transaction
from services.consent import accesslog, repository
from services.consent.cache import Lru

_LOCK_STRIPES = 256


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
