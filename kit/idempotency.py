"""AIP-155 request ids: a retried mutation gets its first answer, never a second effect.

One set of rules for every service (they used to keep three diverging copies):

- a request is known by (scope, method, request_id); the scope is the caller
  (a principal subject, a session, or `ANONYMOUS`), so one caller can never
  replay, or even detect, another caller's request;
- the same request again → the stored response; the same key with another
  request → INVALID_ARGUMENT REQUEST_ID_REUSED;
- a response that held a secret (code, token) is not kept: its retry gets
  FAILED_PRECONDITION REQUEST_ALREADY_PROCESSED and the client starts over;
- a concurrent twin loses on the unique key: ABORTED REQUEST_IN_PROGRESS, and
  since the error aborts the twin's transaction, nothing of it is written.

Each service owns its `processed_requests` table (`processed_requests_table` on
its own MetaData, in its own database): no service reads another's rows.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.schema import SchemaItem

from kit.db import BigIntPK, UTCDateTime
from kit.errors import ServiceError, failed_precondition, invalid_argument

M = TypeVar("M", bound=Message)

TABLE = "processed_requests"
#: Scope of methods callable without a principal: the request hash keeps them apart.
ANONYMOUS = "anonymous"
MAX_SCOPE = 128
FIELD = "request_id"


def processed_requests_table(metadata: MetaData, *extra: SchemaItem) -> Table:
    """The service's table of processed requests; `extra` adds service columns (e.g. an owner
    to purge with). Constraint names are explicit so every metadata names them alike."""
    return Table(
        TABLE,
        metadata,
        Column("id", BigIntPK, autoincrement=True),
        Column("scope", String(MAX_SCOPE), nullable=False),
        Column("method", String(120), nullable=False),
        # 64: rows kept from before request ids had to be UUIDs may be longer than 36.
        Column("request_id", String(64), nullable=False),
        # NULL only on rows migrated from a copy that kept no comparable hash.
        Column("request_hash", String(64), nullable=True),
        # NULL when the response held a secret that must not be stored.
        Column("response", LargeBinary, nullable=True),
        Column("create_time", UTCDateTime, nullable=False),
        *extra,
        PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        UniqueConstraint(
            "scope", "method", "request_id", name=f"uq_{TABLE}_scope_method_request_id"
        ),
    )


def check_request_id(value: str, field: str = FIELD) -> str:
    """The canonical form of a required UUID, so `ABC…` and `abc…` are one key."""
    if not value:
        raise invalid_argument("REQUEST_ID_REQUIRED", f"{field} is required.", field)
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise invalid_argument("REQUEST_ID_INVALID", f"{field} must be a UUID.", field) from exc


def request_hash(request: Message, pepper: bytes | None = None) -> str:
    """SHA-256 of the request's deterministic bytes, request id cleared.

    A service whose requests carry passwords or codes passes its server pepper
    (HMAC): a bare hash of a password would be a fast, unsalted password hash.
    """
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField(FIELD)
    raw = body.SerializeToString(deterministic=True)
    if pepper is None:
        return hashlib.sha256(raw).hexdigest()
    # Prefixed so these MACs never collide with other uses of the same pepper.
    return hmac.new(pepper, b"kit.idempotency\0" + raw, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Key:
    """A validated request id and the hash of the request that came with it."""

    request_id: str
    request_hash: str


@dataclass(frozen=True)
class Ledger:
    """Replay and remember processed requests in one service's table."""

    table: Table
    pepper: bytes | None = None

    def key(self, request: Message) -> Key:
        """Validate before anything is read or written (bad input writes nothing)."""
        request_id = check_request_id(getattr(request, FIELD))
        return Key(request_id, request_hash(request, self.pepper))

    async def replay(
        self, session: AsyncSession, key: Key, *, scope: str, method: str, response_type: type[M]
    ) -> M | None:
        """The stored response of this request, or None when it is new."""
        t = self.table
        row = (
            await session.execute(
                select(t.c.request_hash, t.c.response).where(
                    t.c.scope == scope, t.c.method == method, t.c.request_id == key.request_id
                )
            )
        ).one_or_none()
        if row is None:
            return None
        if row.request_hash is not None and not hmac.compare_digest(
            row.request_hash, key.request_hash
        ):
            raise invalid_argument(
                "REQUEST_ID_REUSED", "This request_id was used for another request.", FIELD
            )
        if row.response is None:
            raise failed_precondition(
                "REQUEST_ALREADY_PROCESSED",
                "This request was already processed; start again with a new request_id.",
            )
        return response_type.FromString(row.response)

    async def remember(
        self,
        session: AsyncSession,
        key: Key,
        *,
        scope: str,
        method: str,
        response: Message | None,
        now: datetime,
        **extra: Any,
    ) -> None:
        """Record the request in the caller's transaction; `response=None` when it held a secret.

        A concurrent twin fails on the unique key; the error aborts its whole
        transaction, so nothing of the twin is written.
        """
        try:
            await session.execute(
                self.table.insert().values(
                    scope=scope,
                    method=method,
                    request_id=key.request_id,
                    request_hash=key.request_hash,
                    response=None
                    if response is None
                    else response.SerializeToString(deterministic=True),
                    create_time=now,
                    **extra,
                )
            )
        except IntegrityError as exc:
            raise ServiceError(
                grpc.StatusCode.ABORTED,
                "REQUEST_IN_PROGRESS",
                "The same request is being processed; retry later.",
            ) from exc
