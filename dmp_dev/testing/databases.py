"""A fresh database per test run: PostgreSQL when reachable, SQLite otherwise.

`DMP_TEST_DATABASE` = `postgresql`, `sqlite` or `auto` (default). With
PostgreSQL each database is created with a unique name and dropped afterwards,
so concurrent runs on one server never collide.

A database at a service's migration head (`migrated`) is a copy of one migrated template
per service and session: `CREATE DATABASE … TEMPLATE` on PostgreSQL, an SQLite backup of the
template file. Running Alembic for every one (0.5-3 s a service on a busy machine, more than
the copy) was repeated ~150 times a suite run: every test stack, service fixture and notify
fault rig. Tests of the migrations themselves start from `create` and run them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from functools import cache
from pathlib import Path

import asyncpg

from kit import migrations

PG_ADMIN_DSN = os.environ.get("DMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# Every service a test starts (in this process, or as a child process inheriting its
# environment) keeps 2 PostgreSQL connections open and opens up to 8 more under load, instead
# of production's 10 + 10: the suite's pytest-xdist workers each run several services against
# one server, whose max_connections (100 by default) they share with any other test run.
SMALL_POOLS = {"DMP_DATABASE_POOL_SIZE": "2", "DMP_DATABASE_MAX_OVERFLOW": "8"}


async def _pg_reachable() -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN_DSN), timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@cache
def backend() -> str:
    """The backend this run uses; `postgresql` fails loudly if it is not reachable."""
    wanted = os.environ.get("DMP_TEST_DATABASE", "auto").lower()
    if wanted == "sqlite":
        return "sqlite"
    reachable = asyncio.run(_pg_reachable())
    if wanted in ("postgresql", "postgres"):
        if not reachable:
            raise RuntimeError(f"DMP_TEST_DATABASE=postgresql but {PG_ADMIN_DSN} is unreachable")
        return "postgresql"
    return "postgresql" if reachable else "sqlite"


class DatabaseFactory:
    """Creates databases on demand and drops them all at the end."""

    def __init__(self, kind: str, tmp_dir: Path) -> None:
        self.kind = kind
        self.tmp_dir = tmp_dir
        self.run_id = uuid.uuid4().hex[:8]
        self._created: list[str] = []
        # service -> name of its migrated template; a lock per service builds it once.
        self._templates: dict[str, str] = {}
        self._template_locks: dict[str, asyncio.Lock] = {}

    def _new_name(self, label: str) -> str:
        name = f"dmp_test_{self.run_id}_{label}_{len(self._created)}"
        self._created.append(name)
        return name

    def _url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self._sqlite_path(name)}"
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"

    def _sqlite_path(self, name: str) -> Path:
        return self.tmp_dir / f"{name}.db"

    async def create(self, label: str) -> str:
        """A new empty database; returns its SQLAlchemy async URL."""
        name = self._new_name(label)
        if self.kind == "postgresql":
            await _admin(f'CREATE DATABASE "{name}"')
        return self._url(name)

    async def migrated(self, service: str, label: str | None = None) -> str:
        """A new database at `service`'s migration head, as `dmp migrate up` leaves it: a
        service never migrates at start, so a test that starts one on a fresh database gets
        one migrated (by `kit.migrations.upgrade`, the function behind `dmp migrate up`,
        once per service and session: each database is a copy of that template)."""
        template = await self._template(service)
        name = self._new_name(label or service)
        if self.kind == "postgresql":
            await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await asyncio.to_thread(
                _sqlite_copy, self._sqlite_path(template), self._sqlite_path(name)
            )
        return self._url(name)

    async def _template(self, service: str) -> str:
        """The name of `service`'s template database, migrated to head on first use. Nothing
        stays connected to it (Alembic's engine uses no pool), as PostgreSQL requires of a
        template."""
        lock = self._template_locks.setdefault(service, asyncio.Lock())
        async with lock:
            if service not in self._templates:
                name = self._new_name(f"template_{service}")
                if self.kind == "postgresql":
                    await _admin(f'CREATE DATABASE "{name}"')
                await migrations.upgrade(service, self._url(name))
                self._templates[service] = name
            return self._templates[service]

    async def drop_all(self, concurrency: int = 8) -> None:
        """Drop every database of the run, a few at a time: each DROP DATABASE waits on the
        server's file removal (~0.2 s), so one after the other they took ~15 s at the end of
        a suite run."""
        if self.kind != "postgresql":
            return
        gate = asyncio.Semaphore(concurrency)

        async def drop(name: str) -> None:
            async with gate:
                await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        await asyncio.gather(*(drop(name) for name in self._created))


async def _admin(statement: str) -> None:
    """One statement on the PostgreSQL server's maintenance database."""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (its WAL included), by SQLite's backup API."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
