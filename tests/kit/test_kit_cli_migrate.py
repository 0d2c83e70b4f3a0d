"""`dmp migrate up|down SERVICE|all` on the run's database backend, for every service: the
command the Kubernetes migration Jobs run, also run twice at once."""

from __future__ import annotations

import asyncio
import sys

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from dmp_cli import catalog
from dmp_cli.main import app
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine
from kit.migrations import version_table
from tests.fixtures import sql

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


async def _at_head(service: str, url: str) -> bool:
    engine = create_engine(url)
    try:
        await migrations.require_current(service, engine)
    except migrations.SchemaNotCurrentError:
        return False
    finally:
        await engine.dispose()
    return True


async def test_migrate_up_all_brings_every_service_to_its_head(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dmp migrate up all`, each service on its own DMP_DATABASE_URL_<SERVICE>."""
    urls = {spec.name: await databases.create(f"all_{spec.name}") for spec in SERVICES}
    monkeypatch.delenv("DMP_DATABASE_URL", raising=False)
    for name, url in urls.items():
        monkeypatch.setenv(f"DMP_DATABASE_URL_{name.upper()}", url)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["migrate", "up", "all"])
    assert result.exit_code == 0, result.output
    for name, url in urls.items():
        assert f"{name}: upgraded to head" in result.output
        assert await _at_head(name, url), name


async def test_migrate_up_all_checks_every_database_before_migrating_any(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *others = SERVICES
    url = await databases.create("all_incomplete")
    monkeypatch.delenv("DMP_DATABASE_URL", raising=False)
    monkeypatch.setenv(f"DMP_DATABASE_URL_{first.name.upper()}", url)
    for spec in others:
        monkeypatch.delenv(f"DMP_DATABASE_URL_{spec.name.upper()}", raising=False)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["migrate", "up", "all"])
    assert result.exit_code == 2
    assert "no database" in result.output
    assert await _tables(url) == set(), "nothing migrated"


def test_all_is_for_up_to_head_only() -> None:
    runner = CliRunner()
    url = ["--database-url", "sqlite+aiosqlite://"]
    to_rev = runner.invoke(app, ["migrate", "up", "all", "--revision", "0001", *url])
    assert to_rev.exit_code == 2
    assert "head only" in to_rev.output
    down = runner.invoke(app, ["migrate", "down", "all", *url])
    assert down.exit_code == 2
    assert "one service at a time" in down.output


async def test_two_migrate_up_at_once_both_succeed_and_migrate_once(
    databases: DatabaseFactory,
) -> None:
    """Two `dmp migrate up records` processes on one fresh database (a Job and its retry, or
    two operators): both exit 0 and the schema is at head, recorded once."""
    url = await databases.create("migrate_twice")
    command = [sys.executable, "-c", "from dmp_cli.main import app; app()"]
    args = ["migrate", "up", "records", "--database-url", url]
    procs = [
        await asyncio.create_subprocess_exec(
            *command, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    logs = "\n".join(out.decode() for out, _ in outputs)
    assert [p.returncode for p in procs] == [0, 0], logs
    assert await _at_head("records", url)
    rows = await sql.fetch(url, text(f"SELECT version_num FROM {version_table('records')}"))
    assert len(rows) == 1
