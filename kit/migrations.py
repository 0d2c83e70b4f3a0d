"""Alembic per service: each service keeps its own migrations and version table.

Migrations run in a worker thread because Alembic's command API is
synchronous while the env scripts drive the async engine with asyncio.run().
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, event, pool
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import async_engine_from_config

ROOT = Path(__file__).resolve().parents[1]


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, url: str) -> Config:
    """An Alembic config for `services/<service>/migrations` (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade_sync(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def downgrade_sync(service: str, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service, url), revision)


async def upgrade(service: str, url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, service, url, revision)


async def downgrade(service: str, url: str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade_sync, service, url, revision)


def _sqlite_transactional_ddl(engine: Engine) -> None:
    """Make a SQLite migration all-or-nothing, as it is on PostgreSQL.

    The sqlite3/aiosqlite drivers only open a transaction before DML, so DDL commits
    at once: a migration interrupted half-way left its tables without its version row,
    and every later start failed with "table … already exists". SQLAlchemy's recipe:
    the driver stops managing transactions and SQLAlchemy emits BEGIN itself.
    """

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's `migrations/env.py`."""
    cfg = context.config
    service = cfg.attributes.get("service") or cfg.get_main_option("service") or "unknown"
    table = version_table(str(service))

    if context.is_offline_mode():
        context.configure(
            url=cfg.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            version_table=table,
            literal_binds=True,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=table,
            render_as_batch=connection.dialect.name == "sqlite",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            cfg.get_section(cfg.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        if engine.dialect.name == "sqlite":
            _sqlite_transactional_ddl(engine.sync_engine)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_async())
