"""consent's 0002 keeps the idempotency rows both ways (up, down, up and the models:
tests/test_migrations.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from dmp.consent.v1 import consent_pb2
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine, session_factory
from kit.idempotency import Ledger
from services.consent import models
from tests.fixtures import sql

KEY = "6f1c2d7e-1b0a-4c55-9a1e-2f3b4c5d6e7f"
OLD = sa.table(
    "idempotency_keys",
    *map(
        sa.column,
        ("subject", "method", "request_id", "request_hash", "response", "create_time"),
    ),
)


async def test_idempotency_rows_survive_0002_both_ways(databases: DatabaseFactory) -> None:
    url = await databases.create("consent_migrations_rows")
    await migrations.upgrade("consent", url, "0001")
    rule = consent_pb2.AccessRule(name="dossiers/d1/accessRules/r1")
    await sql.execute(
        url,
        OLD.insert().values(
            subject="patient-1",
            method="GrantAccess",
            request_id=KEY,
            request_hash="0" * 64,  # 0001's scheme (request id included): not comparable
            response=rule.SerializeToString(),
            create_time=datetime(2026, 1, 2, tzinfo=UTC),
        ),
    )
    await migrations.upgrade("consent", url)
    rows = await sql.fetch(url, sa.select(models.processed_requests))
    assert [(r.scope, r.method, r.request_id, r.request_hash) for r in rows] == [
        ("patient-1", "GrantAccess", KEY, None)
    ]
    ledger = Ledger(models.processed_requests)
    retry = consent_pb2.GrantAccessRequest(parent="dossiers/d1", request_id=KEY)
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            replayed = await ledger.replay(
                session,
                ledger.key(retry),
                scope="patient-1",
                method="GrantAccess",
                response_type=consent_pb2.AccessRule,
            )
    finally:
        await engine.dispose()
    assert replayed == rule
    await migrations.downgrade("consent", url, "0001")
    back = await sql.fetch(url, sa.select(OLD))
    assert [(r.subject, r.method, r.request_id, r.request_hash, r.response) for r in back] == [
        ("patient-1", "GrantAccess", KEY, "", rule.SerializeToString())
    ]
