"""kit.migrations on both backends: a migration that fails half-way leaves nothing behind (the
next run retries it instead of failing on "table already exists"); two runners on one
database take turns on the migration lock, so the second waits and then finds nothing to do;
`require_current` tells a database behind, empty or ahead of the code from one at its head."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine
from tests.fixtures import sql

ENV = """
from sqlalchemy import MetaData

from kit.migrations import run_env

run_env(MetaData())
"""

# KITTEST_RAN: a file the migration appends a line to each time its body runs.
# KITTEST_GATE: the migration announces itself (<gate>.entered), then holds its transaction
# (and so the runner's lock) until the file <gate> exists.
FIRST = """
import os
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if ran := os.environ.get("KITTEST_RAN"):
        with open(ran, "a") as f:
            f.write(f"{os.getpid()}\\n")
    if gate := os.environ.get("KITTEST_GATE"):
        Path(gate + ".entered").touch()
        deadline = time.monotonic() + 120
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the gate")
            time.sleep(0.02)
    op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))
    op.create_index("ix_first_id", "first", ["id"])
    if os.environ.get("KITTEST_MIGRATION_FAILS") == "1":
        raise RuntimeError("interrupted half-way")
    op.create_table("second", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("second")
    op.drop_table("first")
"""

SECOND = """
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("second", sa.Column("note", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("second") as batch:
        batch.drop_column("note")
"""

# One runner as its own process, as two Jobs or a Job and `dmp dev up` would be. With
# KITTEST_BARRIER (a directory) and KITTEST_PARTIES, runners start migrating together.
RUNNER = """
import os
import sys
import time
from pathlib import Path

from kit import migrations

if barrier := os.environ.get("KITTEST_BARRIER"):
    (Path(barrier) / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(barrier)) < int(os.environ["KITTEST_PARTIES"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the other runners never started")
        time.sleep(0.005)
migrations.ROOT = Path(sys.argv[1])
migrations.upgrade_sync(sys.argv[2], sys.argv[3])
"""

SERVICE = "kittest"
WAIT_S = 60.0


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    versions = root / "services" / SERVICE / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions.parent / "env.py").write_text(ENV)
    (versions / "0001_initial.py").write_text(FIRST)
    (versions / "0002_note.py").write_text(SECOND)
    monkeypatch.setattr(migrations, "ROOT", root)
    return root


async def until(condition: Callable[[], bool], what: str, within_s: float = WAIT_S) -> None:
    """Wait for `condition` with a deadline (never a fixed sleep before an assertion)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def current_revisions(url: str) -> list[str]:
    rows = await sql.fetch(
        url, text(f"SELECT version_num FROM {migrations.version_table(SERVICE)}")
    )
    return [row[0] for row in rows]


async def test_failed_migration_is_rolled_back_then_retried(
    fake_root: Path, databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await databases.create("half_migration")
    monkeypatch.setenv("KITTEST_MIGRATION_FAILS", "1")
    with pytest.raises(RuntimeError, match="half-way"):
        await migrations.upgrade(SERVICE, url)
    assert "first" not in await sql.table_names(url)

    monkeypatch.setenv("KITTEST_MIGRATION_FAILS", "0")
    await migrations.upgrade(SERVICE, url)
    assert {"first", "second", migrations.version_table(SERVICE)} <= await sql.table_names(url)

    await migrations.downgrade(SERVICE, url)
    assert not {"first", "second"} & await sql.table_names(url)


@contextmanager
def runner(
    root: Path, url: str, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(root), SERVICE, url],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


async def test_a_second_runner_waits_for_the_first_then_finds_nothing_to_do(
    fake_root: Path, databases: DatabaseFactory, tmp_path: Path
) -> None:
    """The first runner holds its migration open; the second says it waits on the lock and
    runs nothing; once the first commits, the second finds the schema at head. Without the
    lock the second would run the same migration concurrently (the ran file would show it)."""
    url = await databases.create("two_runners")
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    env = {"KITTEST_RAN": str(ran), "KITTEST_GATE": str(gate)}
    entered = Path(f"{gate}.entered")
    second_log = tmp_path / "second.log"
    with runner(fake_root, url, env, tmp_path / "first.log") as first:
        await until(entered.exists, "the first runner inside its migration")
        with runner(fake_root, url, env, second_log) as second:
            await until(
                lambda: b"waiting for another runner" in second_log.read_bytes(),
                "the second runner waiting on the lock",
            )
            assert first.poll() is None
            assert second.poll() is None
            assert ran.read_text().splitlines() == [str(first.pid)]
            gate.touch()
            await until(lambda: first.poll() is not None, "the first runner's end")
            await until(lambda: second.poll() is not None, "the second runner's end")
            assert (first.returncode, second.returncode) == (0, 0), second_log.read_text()
    # Each migration ran once, by the first runner; the version is the head, once.
    assert ran.read_text().splitlines() == [str(first.pid)]
    assert await current_revisions(url) == ["0002"]


async def test_concurrent_runners_all_succeed(
    fake_root: Path, databases: DatabaseFactory, tmp_path: Path
) -> None:
    """Three runners migrating at the same moment, as every replica once did at start: no
    error, each migration run once, the schema at head once."""
    url = await databases.create("many_runners")
    ran, barrier = tmp_path / "ran", tmp_path / "barrier"
    barrier.mkdir()
    env = {"KITTEST_RAN": str(ran), "KITTEST_BARRIER": str(barrier), "KITTEST_PARTIES": "3"}
    with (
        runner(fake_root, url, env, tmp_path / "a.log") as a,
        runner(fake_root, url, env, tmp_path / "b.log") as b,
        runner(fake_root, url, env, tmp_path / "c.log") as c,
    ):
        procs = (a, b, c)
        await until(lambda: all(p.poll() is not None for p in procs), "every runner's end")
        logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in "abc")
        assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert len(ran.read_text().splitlines()) == 1
    assert await current_revisions(url) == ["0002"]


def test_lock_keys_are_fixed_and_distinct_per_service() -> None:
    keys = {service: migrations.lock_key(service) for service in migrations.services()}
    assert set(keys) == {"identity", "records", "consent", "notify", "history_feed"}
    assert len(set(keys.values())) == len(keys)
    assert all(-(2**63) <= key < 2**63 for key in keys.values())  # a PostgreSQL bigint
    # Fixed: a function of the name only, the same in every process and release (a runner
    # of the previous release and one of the next must take the same lock).
    assert migrations.lock_key("records") == -55821337867146558


async def require_current(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrations.require_current(SERVICE, engine)
    finally:
        await engine.dispose()


async def test_require_current_accepts_only_the_head(
    fake_root: Path, databases: DatabaseFactory
) -> None:
    url = await databases.create("require_current")
    with pytest.raises(migrations.SchemaNotCurrentError) as empty:
        await require_current(url)
    assert str(empty.value) == (
        "kittest: the database schema is at revision none (no schema), this release needs "
        "0002. Run `dmp migrate up kittest` first (services never migrate themselves)."
    )
    assert await sql.table_names(url) == set(), "the check creates nothing"

    await migrations.upgrade(SERVICE, url, "0001")
    with pytest.raises(migrations.SchemaNotCurrentError, match="at revision 0001, this release"):
        await require_current(url)

    await migrations.upgrade(SERVICE, url)
    await require_current(url)

    # A newer release migrated the database, then the code was rolled back.
    table = migrations.version_table(SERVICE)
    await sql.execute(url, text(f"UPDATE {table} SET version_num = '0003'"))
    with pytest.raises(migrations.SchemaNotCurrentError) as ahead:
        await require_current(url)
    assert str(ahead.value) == (
        "kittest: the database schema is at revision 0003, newer than this release knows "
        "(head 0002): a newer release migrated it. Run that release, or step its schema back "
        "first with that release's `dmp migrate down kittest --revision 0002`."
    )
