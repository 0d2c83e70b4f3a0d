"""history_feed's migrations go up and all the way down, and match the models."""

from __future__ import annotations

from sqlalchemy import inspect

from kit import migrations
from kit.db import create_engine
from kit.testing.databases import DatabaseFactory
from services.history_feed import models


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_then_downgrade(databases: DatabaseFactory) -> None:
    url = await databases.create("history_migrations")
    await migrations.upgrade("history_feed", url)
    assert set(models.metadata.tables) | {"alembic_version_history_feed"} == await _tables(url)
    await migrations.downgrade("history_feed", url)
    assert await _tables(url) <= {"alembic_version_history_feed"}
    await migrations.upgrade("history_feed", url)
    assert "claim_lines" in await _tables(url)
