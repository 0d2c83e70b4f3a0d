"""notify's Alembic migrations go up and all the way down on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import Table, inspect

from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine
from services.notify import models
from tests.fixtures import sql


async def _unique_columns(url: str) -> set[tuple[str, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            constraints = await conn.run_sync(
                lambda c: inspect(c).get_unique_constraints("deliveries")
            )
    finally:
        await engine.dispose()
    return {tuple(u["column_names"]) for u in constraints}


async def test_upgrade_then_downgrade(databases: DatabaseFactory) -> None:
    url = await databases.create("notify_migrations")
    await migrations.upgrade("notify", url)
    tables = await sql.table_names(url)
    assert {"deliveries", "contact_preferences", "alembic_version_notify"} <= tables
    assert {("request_id",), ("delivery_id",)} <= await _unique_columns(url)
    await migrations.downgrade("notify", url)
    assert not {"deliveries", "contact_preferences", "notifications"} & await sql.table_names(url)
    await migrations.upgrade("notify", url)  # and up again from base
    assert "deliveries" in await sql.table_names(url)


@pytest.mark.parametrize(
    "table",
    [
        models.deliveries,
        models.contact_preferences,
        models.notifications,
        models.dossier_patients,
        models.held_documents,
        models.processed_requests,
    ],
)
async def test_migrated_schema_matches_the_model(databases: DatabaseFactory, table: Table) -> None:
    url = await databases.create("notify_schema")
    await migrations.upgrade("notify", url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: inspect(c).get_columns(table.name))
    finally:
        await engine.dispose()
    migrated = {c["name"]: c["nullable"] for c in columns}
    assert migrated == {c.name: c.nullable for c in table.columns}
