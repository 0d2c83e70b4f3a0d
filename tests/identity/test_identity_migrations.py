"""identity's migrations: up, down, up again, and in step with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from kit import migrations
from kit.db import create_engine
from kit.testing.databases import DatabaseFactory
from services.identity import models

TABLES = {t.name for t in models.metadata.sorted_tables}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(
                    sync_conn, opts={"version_table": migrations.version_table("identity")}
                )
                return compare_metadata(context, models.metadata)

            return list(await conn.run_sync(compare))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(databases: DatabaseFactory) -> None:
    url = await databases.create("identity_migrations")
    await migrations.upgrade("identity", url)
    assert await _tables(url) >= TABLES
    assert await _diff(url) == []
    await migrations.downgrade("identity", url, "base")
    assert await _tables(url) & TABLES == set()
    await migrations.upgrade("identity", url)
    assert await _tables(url) >= TABLES
    assert await _diff(url) == []
