"""What consent's RPC handlers share: settings, policy, database, caches, log writer,
directory client, page tokens.

The app builds it once the database is open and hands it to the servicer, so the
handlers never reach back into the app (no app ↔ servicer import cycle).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from kit.directory import DirectoryClient
from kit.idempotency import Key, Ledger
from kit.pagination import PageTokens
from services.consent.cache import SnapshotCache
from services.consent.log_writer import LogAppender, LogWriter
from services.consent.matrix import Matrix
from services.consent.models import processed_requests
from services.consent.settings import ConsentSettings

M = TypeVar("M", bound=Message)
T = TypeVar("T")

#: Consent requests hold no password or code: a plain hash is enough.
REQUESTS = Ledger(processed_requests)
_WRITE_ATTEMPTS = 5


@dataclass
class Runtime:
    settings: ConsentSettings
    matrix: Matrix
    sessions: async_sessionmaker[AsyncSession]
    cache: SnapshotCache
    log_writer: LogWriter
    directory: DirectoryClient
    page_tokens: PageTokens
    #: Tell the outbox relay an event was queued (it would find it at its next poll).
    wake_relay: Callable[[], None]
    requests: Ledger = field(default=REQUESTS)

    async def replay(
        self,
        principal: principal_pb2.Principal,
        method: str,
        key: Key,
        response_type: type[M],
    ) -> M | None:
        """The stored answer of a retried request, or None for a new one."""
        async with self.sessions() as session:
            return await self.requests.replay(
                session, key, scope=principal.subject, method=method, response_type=response_type
            )

    async def remember(
        self,
        session: AsyncSession,
        *,
        principal: principal_pb2.Principal,
        method: str,
        key: Key,
        response: Message,
        now: datetime,
    ) -> None:
        """Keep the answer for retries, in the transaction that produced it."""
        await self.requests.remember(
            session, key, scope=principal.subject, method=method, response=response, now=now
        )

    async def write_decision(self, dossier: str, work: Callable[[LogAppender], Awaitable[T]]) -> T:
        """Run `work`, which only appends a decision (and its first-access / emergency
        event), in the record's next group commit (`LogWriter.grouped`)."""
        result, emitted = await self.log_writer.grouped(dossier, work)
        if emitted:
            self.wake_relay()
        return result

    async def write(
        self,
        dossier: str,
        work: Callable[[LogAppender], Awaitable[T]],
        *,
        invalidate: bool = True,
    ) -> T:
        """Run `work` in one transaction that may append to `dossier`'s log (retried when a
        replica took the same log sequence); `invalidate`: the record's rules changed."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                async with self.log_writer.appending(dossier) as appender:
                    result = await work(appender)
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
                continue
            if invalidate:
                self.cache.invalidate(dossier)
            if invalidate or appender.emitted:
                # Only when an event was queued: a relay poll competes for SQLite's write lock.
                self.wake_relay()
            return result
        raise AssertionError("unreachable")
