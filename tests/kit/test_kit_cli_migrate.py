"""`dmp migrate up|down SERVICE` on the run's database backend, for every service."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from dmp_cli import catalog
from dmp_cli.main import app
from dmp_dev.testing.databases import DatabaseFactory
from kit.db import create_engine
from kit.migrations import version_table

SERVICES = [s for s in catalog.available() if s.has_migrations()]


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
async def test_migrate_up_then_down_to_base(
    spec: catalog.ServiceSpec, databases: DatabaseFactory
) -> None:
    url = await databases.create(f"migrate_{spec.name}")
    runner = CliRunner()

    # The command runs its own event loop (as from a shell): keep it off the test's loop.
    up = await asyncio.to_thread(
        runner.invoke, app, ["migrate", "up", spec.name, "--database-url", url]
    )
    assert up.exit_code == 0, up.output
    tables = await _tables(url)
    assert version_table(spec.name) in tables
    assert len(tables) > 1

    down = await asyncio.to_thread(
        runner.invoke,
        app,
        ["migrate", "down", spec.name, "--revision", "base", "--database-url", url],
    )
    assert down.exit_code == 0, down.output
    assert await _tables(url) <= {version_table(spec.name)}


def test_unknown_service_or_missing_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["migrate", "up", "nope", "--database-url", "sqlite+aiosqlite://"])
    assert unknown.exit_code == 2
    assert "unknown service" in unknown.output
    if SERVICES:
        name = SERVICES[0].name
        monkeypatch.delenv("DMP_DATABASE_URL", raising=False)
        monkeypatch.delenv(f"DMP_DATABASE_URL_{name.upper()}", raising=False)
        missing = runner.invoke(app, ["migrate", "up", name])
        assert missing.exit_code == 2
        assert "no database" in missing.output
