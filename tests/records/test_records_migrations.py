"""records' 0002: request_ids → kit's processed_requests, rows kept both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from dmp.records.v1 import records_pb2
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine, session_factory
from kit.errors import ServiceError
from kit.idempotency import Ledger, request_hash
from services.records import models
from tests.fixtures import sql

KEY = "5a0e6a51-58cb-4a57-9a43-1f8f0b1d2c3e"
COLUMNS = ("method", "request_id", "request_hash", "dossier_pk", "response", "create_time")
OLD = sa.table("request_ids", sa.column("principal"), *map(sa.column, COLUMNS))


async def test_rows_survive_0002_both_ways(databases: DatabaseFactory) -> None:
    url = await databases.create("records_migrations_rows")
    await migrations.upgrade("records", url, "0001")
    request = records_pb2.CreateDossierRequest(request_id=KEY)
    request.dossier.patient_ins = "1" * 15
    answer = records_pb2.Dossier(name="dossiers/d1")
    await sql.execute(
        url,
        OLD.insert().values(
            principal="desk-1",
            method="CreateDossier",
            request_id=KEY,
            request_hash=request_hash(request),  # 0001 already hashed like kit
            dossier_pk=7,
            response=answer.SerializeToString(),
            create_time=datetime(2026, 1, 2, tzinfo=UTC),
        ),
    )
    await migrations.upgrade("records", url)
    assert await sql.schema_diff(url, "records", models.metadata, only={"processed_requests"}) == []
    rows = await sql.fetch(url, sa.select(models.processed_requests))
    assert [(r.scope, r.method, r.request_id, r.dossier_pk) for r in rows] == [
        ("desk-1", "CreateDossier", KEY, 7)
    ]
    ledger = Ledger(models.processed_requests)
    other = records_pb2.CreateDossierRequest(request_id=KEY)
    other.dossier.patient_ins = "2" * 15
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            replay = ledger.replay
            args = {"scope": "desk-1", "method": "CreateDossier"}
            got = await replay(
                session, ledger.key(request), response_type=records_pb2.Dossier, **args
            )
            assert got == answer
            with pytest.raises(ServiceError) as refused:
                await replay(session, ledger.key(other), response_type=records_pb2.Dossier, **args)
            assert refused.value.reason == "REQUEST_ID_REUSED"
    finally:
        await engine.dispose()
    await migrations.downgrade("records", url, "0001")
    back = await sql.fetch(url, sa.select(OLD))
    assert [tuple(r)[:5] for r in back] == [
        ("desk-1", "CreateDossier", KEY, request_hash(request), 7)
    ]
    await migrations.upgrade("records", url)
    assert await sql.schema_diff(url, "records", models.metadata, only={"processed_requests"}) == []
