"""records' data migrations: 0002 (request_ids → kit's processed_requests) and 0004 (the
advance directives leave the health profile for their revisions), rows kept both ways."""

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


WHEN = datetime(2026, 3, 4, tzinfo=UTC)
DOSSIERS = sa.table("dossiers", *map(sa.column, ("id", "dossier_id", "patient_ins", "identity",
    "contact", "state", "creation_channel", "creator", "accepted_terms_version", "create_time",
    "update_time", "close_reason", "close_comment", "kek_id", "wrapped_dek", "revision",
    "profile_revision")))  # fmt: skip
ITEMS = sa.table("profile_items", *map(sa.column, ("dossier_pk", "item_id", "section", "sealed",
    "removed", "create_time", "update_time")))  # fmt: skip


async def test_directives_become_revision_1_in_0004_and_come_back(
    databases: DatabaseFactory,
) -> None:
    url = await databases.create("records_migrations_directives")
    await migrations.upgrade("records", url, "0003")
    await sql.execute(
        url,
        DOSSIERS.insert().values(
            id=1,
            dossier_id="a" * 32,
            patient_ins="1" * 15,
            identity=b"i",
            contact=b"c",
            state=1,
            creation_channel=1,
            creator="desk",
            accepted_terms_version="1",
            create_time=WHEN,
            update_time=WHEN,
            close_reason=0,
            close_comment="",
            kek_id="k",
            wrapped_dek=b"w",
            revision=1,
            profile_revision=1,
        ),
    )
    for item_id, section, removed in (
        ("d" * 32, "advance_directives", False),
        ("e" * 32, "advance_directives", True),  # an earlier one, removed
        ("f" * 32, "allergies", False),
    ):
        await sql.execute(
            url,
            ITEMS.insert().values(
                dossier_pk=1,
                item_id=item_id,
                section=section,
                sealed=item_id.encode(),
                removed=removed,
                create_time=WHEN,
                update_time=WHEN,
            ),
        )
    await migrations.upgrade("records", url)
    revisions = await sql.fetch(url, sa.select(models.advance_directive_revisions))
    # The sealed bytes move as they are, still bound to the item id (now the seal id).
    assert [(r.dossier_pk, r.revision, r.seal_id, r.sealed) for r in revisions] == [
        (1, 1, "d" * 32, b"d" * 32)
    ]
    left = await sql.fetch(url, sa.select(models.profile_items.c.section))
    assert [r.section for r in left] == ["allergies"]
    await migrations.downgrade("records", url, "0003")
    back = await sql.fetch(url, sa.select(ITEMS.c.item_id, ITEMS.c.section, ITEMS.c.sealed))
    assert sorted((r.item_id, r.section, r.sealed) for r in back) == [
        ("d" * 32, "advance_directives", b"d" * 32),
        ("f" * 32, "allergies", b"f" * 32),
    ]
