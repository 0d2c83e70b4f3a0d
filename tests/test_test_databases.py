"""`databases.migrated` hands out copies of one migrated template per service: each copy is
at the service's head (a service starts on it) and is a database of its own (what a test
writes in one is in no other, nor in the template the next copies come from)."""

from __future__ import annotations

from sqlalchemy import inspect, text

from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine


async def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrated_copies_are_at_head_and_independent(databases: DatabaseFactory) -> None:
    first = await databases.migrated("history_feed", "copy_first")
    engine = create_engine(first)
    try:
        await migrations.require_current("history_feed", engine)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE written_by_this_test (x INTEGER)"))
    finally:
        await engine.dispose()

    second = await databases.migrated("history_feed", "copy_second")
    engine = create_engine(second)
    try:
        await migrations.require_current("history_feed", engine)
    finally:
        await engine.dispose()
    assert "written_by_this_test" in await tables(first)
    assert "written_by_this_test" not in await tables(second)
    assert first != second
    assert migrations.version_table("history_feed") in await tables(second)
