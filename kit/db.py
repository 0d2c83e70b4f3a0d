"""Async SQLAlchemy 2 engines for PostgreSQL (asyncpg) and SQLite (aiosqlite).

PostgreSQL is the production database; SQLite files under ./var are the
embedded default of `make run`. Both must behave the same for the services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from kit import clock

T = TypeVar("T")

# SQLite numbers new rows itself only for INTEGER PRIMARY KEY (the rowid alias), not BIGINT.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Constraint names every service's schema uses, so migrations name them the same way.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    """A fresh MetaData for one service's schema, with the shared naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Now on the process clock (`kit.clock`), the instant every stored timestamp and time
    rule uses, so a test moves it instead of waiting."""
    return clock.now()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine with the per-backend settings the services rely on.

    `hide_parameters`: SQLAlchemy puts a failed statement's bound values in the exception's
    message, and an INTERNAL error is logged with its exception; those values are medical
    content, passwords' hashes or codes, which never go to a log.
    """
    if not url:
        raise ValueError("DMP_DATABASE_URL is not set")
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # No pre-ping: it cost three round trips (BEGIN, a ping, ROLLBACK) before every unit of
    # work, a third of a read's. A connection the server closed (restart, failover,
    # pg_terminate_backend) is seen closed by the driver without a round trip and replaced at
    # checkout (`_refuse_closed`); one that died unnoticed fails its first statement, and
    # `retrying` runs the unit of work once more on a fresh connection. Connections are
    # recycled after half an hour, before firewalls and proxies drop idle ones.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled asyncpg connection whose socket the server closed: the pool discards it and
    checks out another (SQLAlchemy retries a checkout that raises DisconnectionError)."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def pool_options(url: str, pool_size: int, max_overflow: int) -> dict[str, int]:
    """`create_engine` arguments sizing a PostgreSQL pool (none for SQLite: its default pool
    suits a file)."""
    if is_sqlite(url):
        return {}
    return {"pool_size": pool_size, "max_overflow": max_overflow}


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def single_statement_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose statements each run on their own (AUTOCOMMIT): no BEGIN and no COMMIT
    round trip. For reads whose every statement stands alone: under PostgreSQL's READ
    COMMITTED each statement of a transaction takes its own snapshot anyway, so a
    transaction adds round trips, not consistency (a read that needs one snapshot across
    statements keeps `transaction` on the ordinary sessions)."""
    return session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error (nothing half-written)."""
    async with sessions() as session, session.begin():
        yield session


async def retrying(
    sessions: async_sessionmaker[AsyncSession],
    body: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """`body` in one `transaction`, run once more if its connection turned out dead.

    Without the pool's pre-ping, a connection that died unnoticed (a server restart seen
    only when written to) fails the first statement sent on it; SQLAlchemy invalidates it
    and flags the error `connection_invalidated`. Nothing of that transaction committed, so
    running the unit of work again on a fresh connection gives the answer the caller would
    have had. A mutation that lost its connection at COMMIT may have committed: callers
    retry only reads and idempotent units of work (request ledger, ON CONFLICT DO NOTHING).
    """
    for attempt in (0, 1):
        try:
            async with transaction(sessions) as session:
                return await body(session)
        except DBAPIError as exc:
            if attempt or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")
