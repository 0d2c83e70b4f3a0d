"""A fresh database per test run: PostgreSQL when reachable, SQLite otherwise.

`DMP_TEST_DATABASE` = `postgresql`, `sqlite` or `auto` (default). With
PostgreSQL each database is created with a unique name and dropped afterwards,
so concurrent runs on one server never collide.
"""

from __future__ import annotations

import asyncio
import os
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

    async def create(self, label: str) -> str:
        """A new empty database; returns its SQLAlchemy async URL."""
        name = f"dmp_test_{self.run_id}_{label}_{len(self._created)}"
        self._created.append(name)
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp_dir / (name + '.db')}"
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"

    async def migrated(self, service: str, label: str | None = None) -> str:
        """A new database at `service`'s migration head, as `dmp migrate up` leaves it: a
        service never migrates at start, so a test that starts one on a fresh database
        migrates it first, through the same function."""
        url = await self.create(label or service)
        await migrations.upgrade(service, url)
        return url

    async def drop_all(self, concurrency: int = 8) -> None:
        """Drop every database of the run, a few at a time: each DROP DATABASE waits on the
        server's file removal (~0.2 s), so one after the other they took ~15 s at the end of
        a suite run."""
        if self.kind != "postgresql":
            return
        gate = asyncio.Semaphore(concurrency)

        async def drop(name: str) -> None:
            async with gate:
                conn = await asyncpg.connect(PG_ADMIN_DSN)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    await conn.close()

        await asyncio.gather(*(drop(name) for name in self._created))
