"""identity's 0002 keeps the processed requests both ways (up, down, up and the models:
tests/test_migrations.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from kit.db import create_engine, session_factory
from kit.errors import ServiceError
from kit.idempotency import Ledger
from services.identity import models
from tests.fixtures import sql

OLD_COLUMNS = ("request_id", "method", "caller", "response", "created_at")
KEPT = "0b8f5a43-6f0e-4f7e-9a59-6a4d8f1f0e01"
SECRET = "0b8f5a43-6f0e-4f7e-9a59-6a4d8f1f0e02"


async def test_processed_requests_keep_their_rows_both_ways(databases: DatabaseFactory) -> None:
    """0002 moves 0001's rows to the kit shape and back, and kit keeps their old meaning."""
    url = await databases.create("identity_migrations_rows")
    await migrations.upgrade("identity", url, "0001")
    old = sa.table("processed_requests", *(sa.column(c) for c in OLD_COLUMNS))
    kept = identity_pb2.LogoutResponse(session="accounts/a/sessions/s")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await sql.execute(
        url,
        old.insert().values(
            request_id=KEPT,
            method="Logout",
            caller="session-1",
            response=kept.SerializeToString(),
            created_at=when,
        ),
        old.insert().values(
            request_id=SECRET,
            method="StartLogin",
            caller="anonymous",
            response=None,
            created_at=when,
        ),
    )
    await migrations.upgrade("identity", url)
    rows = await sql.fetch(
        url,
        sa.select(models.processed_requests).order_by(models.processed_requests.c.request_id),
    )
    assert [(r.scope, r.method, r.request_id, r.request_hash) for r in rows] == [
        ("session-1", "Logout", KEPT, None),
        ("anonymous", "StartLogin", SECRET, None),
    ]
    ledger = Ledger(models.processed_requests, b"pepper")
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            replayed = await ledger.replay(
                session,
                ledger.key(identity_pb2.LogoutRequest(request_id=KEPT)),
                scope="session-1",
                method="Logout",
                response_type=identity_pb2.LogoutResponse,
            )
            assert replayed == kept
            with pytest.raises(ServiceError) as refused:
                await ledger.replay(
                    session,
                    ledger.key(identity_pb2.StartLoginRequest(request_id=SECRET)),
                    scope="anonymous",
                    method="StartLogin",
                    response_type=identity_pb2.StartLoginResponse,
                )
            assert refused.value.reason == "REQUEST_ALREADY_PROCESSED"
    finally:
        await engine.dispose()
    await migrations.downgrade("identity", url, "0001")
    back = await sql.fetch(url, sa.select(old).order_by(old.c.request_id))
    assert [tuple(r)[:4] for r in back] == [
        (KEPT, "Logout", "session-1", kept.SerializeToString()),
        (SECRET, "StartLogin", "anonymous", None),
    ]
    assert all(r.created_at is not None for r in back)
