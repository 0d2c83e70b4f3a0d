"""kit.db engines keep bound values out of exception messages (they reach INTERNAL logs) and
survive connections the server closed without a pre-ping."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dmp_dev.testing.databases import DatabaseFactory
from kit.db import create_engine, is_sqlite, retrying, session_factory

SECRET = "allergie-penicilline-choc-anaphylactique"


async def test_failed_statement_message_holds_no_bound_value(databases: DatabaseFactory) -> None:
    engine = create_engine(await databases.create("kit_db"))
    table = Table(
        "notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("text", String, unique=True),
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(insert(table).values(id=1, text=SECRET))
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                await conn.execute(insert(table).values(id=2, text=SECRET))
        assert SECRET not in str(caught.value)
        assert "hidden due to hide_parameters" in str(caught.value)
    finally:
        await engine.dispose()


async def test_work_survives_a_connection_the_server_closed(databases: DatabaseFactory) -> None:
    """No pre-ping: a pooled connection whose backend was terminated (restart, failover) is
    replaced at checkout or its unit of work run once more, not answered with an error."""
    url = await databases.create("kit_db_dropped")
    if is_sqlite(url):
        pytest.skip("PostgreSQL connections only: a SQLite file has no server to drop it")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessions = session_factory(engine)
    admin = create_engine(url, pool_size=1, max_overflow=0)

    async def backend_pid(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    try:
        first = await retrying(sessions, backend_pid)
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        second = await retrying(sessions, backend_pid)
        assert second != first
        # Twice more: the replacement connection is pooled and healthy.
        assert await retrying(sessions, backend_pid) == second
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_dead_connection_noticed_only_at_its_first_statement_is_retried_once(
    databases: DatabaseFactory,
) -> None:
    """The connection the checkout still believes open (its close not yet seen) fails the
    first statement; `retrying` runs the work again on a new one, once."""
    url = await databases.create("kit_db_unnoticed")
    if is_sqlite(url):
        pytest.skip("PostgreSQL connections only")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessions = session_factory(engine)
    runs: list[int] = []

    async def body(session: AsyncSession) -> int:
        runs.append(1)
        if len(runs) == 1:
            # Closed under the session's feet after checkout: the statement meets a dead
            # connection, as one whose server vanished without a word.
            raw = await (await session.connection()).get_raw_connection()
            await raw.driver_connection.close()
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    try:
        assert await retrying(sessions, body) == 1
        assert len(runs) == 2
    finally:
        await engine.dispose()
