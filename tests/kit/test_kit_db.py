"""kit.db engines keep bound values out of exception messages (they reach INTERNAL logs)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from dmp_dev.testing.databases import DatabaseFactory
from kit.db import create_engine

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
