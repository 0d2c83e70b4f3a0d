"""history_feed's migrations go up and all the way down, and match the models."""

from __future__ import annotations

from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from services.history_feed import models
from tests.fixtures import sql


async def test_upgrade_then_downgrade(databases: DatabaseFactory) -> None:
    url = await databases.create("history_migrations")
    await migrations.upgrade("history_feed", url)
    assert set(models.metadata.tables) | {"alembic_version_history_feed"} == await sql.table_names(
        url
    )
    await migrations.downgrade("history_feed", url)
    assert await sql.table_names(url) <= {"alembic_version_history_feed"}
    await migrations.upgrade("history_feed", url)
    assert "claim_lines" in await sql.table_names(url)
