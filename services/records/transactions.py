"""One transaction per RPC; mutations idempotent per (principal, method, request_id).

A mutation follows the rules of `kit.idempotency`: a retry returns the stored
first response; the same key with another body is refused. A concurrent change
that commits first (same INS, same unique id) makes the body run once more, so
its checks see that row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from kit.context import require_principal
from kit.db import retrying, transaction, utcnow
from kit.errors import ServiceError
from kit.idempotency import Ledger
from services.records.models import processed_requests

M = TypeVar("M", bound=Message)
#: A mutation's work: its response and the record it belongs to (purged with it), if any.
Mutation = Callable[
    [AsyncSession, principal_pb2.Principal, datetime], Awaitable[tuple[M, int | None]]
]
Read = Callable[[AsyncSession, principal_pb2.Principal, datetime], Awaitable[M]]

# Processed requests; `dossier_pk` lets the purge drop a record's stored answers with
# it. Plain hashes: records' requests hold no password or code.
REQUESTS = Ledger(processed_requests)


class Transactions:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        on_commit: Callable[[], None],
        single: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`on_commit`: called after each committed mutation (wakes the outbox relay);
        `single`: sessions without a transaction (`kit.db.single_statement_sessions`) for
        `read_single`, the ordinary ones if not given."""
        self._db = db
        self._single = single or db
        self._on_commit = on_commit

    async def mutate(
        self, method: str, request: Message, response_type: type[M], body: Mutation[M]
    ) -> M:
        principal = require_principal()
        key = REQUESTS.key(request)
        scope = principal.subject
        for attempt in (0, 1):
            now = utcnow()
            try:
                async with transaction(self._db) as session:
                    prior = await REQUESTS.replay(
                        session, key, scope=scope, method=method, response_type=response_type
                    )
                    if prior is not None:
                        return prior
                    result, dossier_pk = await body(session, principal, now)
                    await REQUESTS.remember(
                        session,
                        key,
                        scope=scope,
                        method=method,
                        response=result,
                        now=now,
                        dossier_pk=dossier_pk,
                    )
            except IntegrityError as exc:
                # A concurrent change committed first (same INS or unique id): run again,
                # the checks now see its row. A twin of this very request is refused by
                # REQUESTS.remember instead (ABORTED REQUEST_IN_PROGRESS).
                if attempt:
                    raise ServiceError(
                        grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE", "Concurrent change; retry."
                    ) from exc
                continue
            self._on_commit()
            return result
        raise AssertionError("unreachable")

    async def read(self, body: Read[M]) -> M:
        """A read, run once more on a fresh connection if its pooled one was dead."""
        principal = require_principal()
        now = utcnow()
        return await retrying(self._db, lambda session: body(session, principal, now))

    async def read_single(self, body: Read[M]) -> M:
        """A read whose statements each stand alone (GetDocument: one joined statement),
        outside any transaction: one round trip per statement, no BEGIN / COMMIT."""
        principal = require_principal()
        now = utcnow()
        return await retrying(self._single, lambda session: body(session, principal, now))
