"""A service never migrates: started on a database that is not at its code's migration head
(empty, behind, or ahead after a rollback of code) it refuses to start, names the command to
run, and exits with status 78 without serving. In-process through `kit.server.start_app` and as
the process a Deployment runs (`python -m services.records`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from dmp_dev.launcher.nats_server import free_port
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.server import EXIT_SCHEMA_NOT_CURRENT, start_app
from services.records.app import RecordsApp
from services.records.settings import RecordsSettings
from tests.fixtures import sql

ROOT = Path(__file__).resolve().parents[2]
BEHIND = "Run `dmp migrate up records` first (services never migrate themselves)."


def settings(url: str, port_file: Path) -> RecordsSettings:
    # NATS on a port nobody listens on: a service that got past the check would hang there,
    # not serve; the refusal comes before any connection but the database's.
    return RecordsSettings(
        database_url=url,
        nats_url=f"nats://127.0.0.1:{free_port()}",
        grpc_port=0,
        port_file=str(port_file),
        log_json=False,
    )


async def ahead(url: str) -> None:
    """The database as a newer release leaves it: a revision this code does not know."""
    await migrations.upgrade("records", url)
    table = migrations.version_table("records")
    await sql.execute(url, text(f"UPDATE {table} SET version_num = 'f00d'"))


async def test_start_app_refuses_a_database_that_is_not_at_head(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    port_file = tmp_path / "port"
    empty = await databases.create("start_empty")
    with pytest.raises(migrations.SchemaNotCurrentError) as refused:
        await start_app(RecordsApp(settings(empty, port_file)))
    assert str(refused.value).endswith(BEHIND)
    assert "at revision none (no schema)" in str(refused.value)
    assert await sql.table_names(empty) == set(), "the service created nothing"

    behind = await databases.create("start_behind")
    await migrations.upgrade("records", behind, "0001")
    with pytest.raises(migrations.SchemaNotCurrentError) as refused:
        await start_app(RecordsApp(settings(behind, port_file)))
    assert str(refused.value).startswith("records: the database schema is at revision 0001,")
    assert str(refused.value).endswith(BEHIND)

    newer = await databases.create("start_ahead")
    await ahead(newer)
    with pytest.raises(migrations.SchemaNotCurrentError, match="newer than this release knows"):
        await start_app(RecordsApp(settings(newer, port_file)))
    assert not port_file.exists(), "never served"


async def run_service(url: str, tmp_path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env.update(
        DMP_DATABASE_URL=url,
        DMP_GRPC_PORT="0",
        DMP_PORT_FILE=str(tmp_path / "port"),
        DMP_NATS_URL=f"nats://127.0.0.1:{free_port()}",
        DMP_LOG_JSON="true",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.records",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize("state", ["behind", "ahead"])
async def test_the_service_process_exits_78_with_the_command_to_run(
    databases: DatabaseFactory, tmp_path: Path, state: str
) -> None:
    url = await databases.create(f"process_{state}")
    if state == "behind":
        await migrations.upgrade("records", url, "0001")
        expected = BEHIND
    else:
        await ahead(url)
        expected = "step its schema back first with that release's `dmp migrate down records"
    code, output = await run_service(url, tmp_path)
    assert code == EXIT_SCHEMA_NOT_CURRENT == 78, output
    assert "refusing to start: database schema not current" in output
    assert expected in output
    assert "Traceback" not in output, "a clear message, not a crash"
    assert not (tmp_path / "port").exists(), "never served"
