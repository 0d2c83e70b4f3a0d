"""Alembic per service: each service keeps its own migrations and version table.

Migrations run once per rollout, never at a service's start: `dmp migrate up` (a Kubernetes
Job per service, the launcher's first step) upgrades under a lock, and a starting service only
checks that its database is at this code's head (`require_current`), refusing to start if not.
Two runners on one database take turns: PostgreSQL holds a session-level advisory lock on a
fixed key per service (`lock_key`), SQLite an exclusive `flock` on a file next to the database
(`<database>.migrate.lock`), both for the whole run, so the second runner waits and then
finds nothing left to do.

Migrations run in a worker thread because Alembic's command API is synchronous while the env
scripts drive the async engine with asyncio.run().
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event, make_url, pool, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_engine_from_config

from kit.logs import get_logger

ROOT = Path(__file__).resolve().parents[1]

log = get_logger(__name__)

# Alembic's `context` is one module-level proxy: two runs in one process must not overlap
# (each would read the other's configuration). Across processes the database lock applies.
_ALEMBIC = threading.Lock()


class SchemaNotCurrentError(RuntimeError):
    """The database is not at this code's migration head: the service must not start on it."""


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def services() -> list[str]:
    """Every service that has migrations (`services/<name>/migrations/env.py`), sorted."""
    return sorted(p.parent.parent.name for p in (ROOT / "services").glob("*/migrations/env.py"))


def lock_key(service: str) -> int:
    """The advisory lock key of `service`'s migrations: fixed, derived from its version table
    so services sharing one database do not wait for each other."""
    digest = hashlib.sha256(f"dmp.migrations.{version_table(service)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def alembic_config(service: str, url: str) -> Config:
    """An Alembic config for `services/<service>/migrations` (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade_sync(service: str, url: str, revision: str = "head") -> None:
    """Upgrade `service`'s database to `revision`, waiting for any other runner first."""
    with _ALEMBIC:
        command.upgrade(alembic_config(service, url), revision)


def downgrade_sync(service: str, url: str, revision: str = "base") -> None:
    with _ALEMBIC:
        command.downgrade(alembic_config(service, url), revision)


async def upgrade(service: str, url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, service, url, revision)


async def downgrade(service: str, url: str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade_sync, service, url, revision)


async def require_current(service: str, engine: AsyncEngine) -> None:
    """Raise SchemaNotCurrentError unless `engine`'s database is exactly at `service`'s head.

    Behind (or empty): someone must run the migrations first. Ahead (a revision this code
    does not know): the code was rolled back under a newer schema. Neither is fixed here:
    a service that migrated itself would race its own replicas.
    """
    script = ScriptDirectory(str(ROOT / "services" / service / "migrations"))
    heads = set(script.get_heads())
    async with engine.connect() as connection:
        current = set(await connection.run_sync(_current_heads, version_table(service)))
    if current == heads:
        return
    head = ", ".join(sorted(heads))
    known = {s.revision for s in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise SchemaNotCurrentError(
            f"{service}: the database schema is at revision {', '.join(unknown)}, newer than "
            f"this release knows (head {head}): a newer release migrated it. Run that release, "
            f"or step its schema back first with that release's "
            f"`dmp migrate down {service} --revision {head}`."
        )
    at = ", ".join(sorted(current)) or "none (no schema)"
    raise SchemaNotCurrentError(
        f"{service}: the database schema is at revision {at}, this release needs {head}. "
        f"Run `dmp migrate up {service}` first (services never migrate themselves)."
    )


def _current_heads(connection: Connection, table: str) -> tuple[str, ...]:
    return MigrationContext.configure(connection, opts={"version_table": table}).get_current_heads()


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


@contextlib.contextmanager
def _sqlite_file_lock(url: str, service: str) -> Iterator[None]:
    """An exclusive flock on `<database>.migrate.lock` for the whole run (no-op in memory).

    Not BEGIN EXCLUSIVE: each migration commits on its own and Alembic reads the version
    table before the first one, so no single SQLite transaction spans a run; and SQLite's
    busy timeout would bound the wait, where a runner must wait as long as the other takes.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    path = Path(str(parsed.database)).with_name(Path(str(parsed.database)).name + ".migrate.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("migrations waiting for another runner", service=service, lock=str(path))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def _pg_advisory_lock(connection: AsyncConnection, service: str) -> AsyncIterator[None]:
    """Session-level pg_advisory_lock(lock_key(service)) held on the migrating connection.

    Released explicitly at the end; if the run fails, closing the connection (NullPool)
    releases it, as it does when a runner dies. A no-op on other backends.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    key = {"key": lock_key(service)}
    free = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key)
    if not free:
        log.info("migrations waiting for another runner", service=service, lock=key["key"])
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    await connection.commit()
    yield
    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
    await connection.commit()


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's `migrations/env.py`."""
    cfg = context.config
    service = str(cfg.attributes.get("service") or cfg.get_main_option("service") or "unknown")
    table = version_table(service)

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
        try:
            async with engine.connect() as connection, _pg_advisory_lock(connection, service):
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    with _sqlite_file_lock(str(cfg.get_main_option("sqlalchemy.url")), service):
        asyncio.run(run_async())
