"""kit.migrations: a migration that fails half-way leaves nothing behind, on both backends,
so the next start retries it instead of failing on "table already exists"."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from tests.fixtures import sql

ENV = """
from sqlalchemy import MetaData

from kit.migrations import run_env

run_env(MetaData())
"""

MIGRATION = """
import os

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("first", sa.Column("id", sa.Integer, primary_key=True))
    op.create_index("ix_first_id", "first", ["id"])
    if os.environ.get("KITTEST_MIGRATION_FAILS") == "1":
        raise RuntimeError("interrupted half-way")
    op.create_table("second", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("second")
    op.drop_table("first")
"""


@pytest.fixture
def fake_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    root = tmp_path / "root"
    versions = root / "services" / "kittest" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions.parent / "env.py").write_text(ENV)
    (versions / "0001_initial.py").write_text(MIGRATION)
    monkeypatch.setattr(migrations, "ROOT", root)
    return "kittest"


async def test_failed_migration_is_rolled_back_then_retried(
    fake_service: str, databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await databases.create("half_migration")
    monkeypatch.setenv("KITTEST_MIGRATION_FAILS", "1")
    with pytest.raises(RuntimeError, match="half-way"):
        await migrations.upgrade(fake_service, url)
    assert "first" not in await sql.table_names(url)

    monkeypatch.setenv("KITTEST_MIGRATION_FAILS", "0")
    await migrations.upgrade(fake_service, url)
    assert {"first", "second", migrations.version_table(fake_service)} <= await sql.table_names(url)

    await migrations.downgrade(fake_service, url)
    assert not {"first", "second"} & await sql.table_names(url)
