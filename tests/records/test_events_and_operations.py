"""Events through the outbox on a real nats-server (ids only), the retention
purge (operator command), KEK rotation, and the migration's downgrade."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from typer.testing import CliRunner

from dmp.records.v1 import events_pb2, records_pb2
from dmp_cli.main import app
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from services.records import operations
from services.records.models import dossiers
from tests.fixtures.records import RecordsCalls, make_ins, patient, professional
from tests.records.helpers import add_doc, create_request, doc, expect_error, new_dossier, rid

R = records_pb2
C = grpc.StatusCode


async def test_events_are_published_with_ids_only(records: RecordsCalls, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    got: list[tuple[str, bytes]] = []

    async def collect(msg: Any) -> None:
        got.append((msg.subject, msg.data))

    sub = await nc.subscribe("dmp.records.>", cb=collect)
    try:
        ins = make_ins()
        dossier = await records.call(
            "CreateDossier", create_request(ins, "professional"), professional()
        )
        name = dossier.name
        secret_title = "Titre tres confidentiel QWERTY"
        author = professional("10000000101")
        created = await add_doc(records, name, author, title=secret_title, content=b"QWERTY body")
        new = await records.call(
            "ReplaceDocument",
            R.ReplaceDocumentRequest(name=created.name, document=doc(title="v2"), request_id=rid()),
            author,
        )
        await records.call(
            "UpdateDocumentVisibility",
            R.UpdateDocumentVisibilityRequest(
                name=new.name,
                set_flags=[R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT],
                request_id=rid(),
            ),
            author,
        )
        await records.call(
            "DeleteDocument", R.DeleteDocumentRequest(name=new.name, request_id=rid()), author
        )
        me = patient(ins)
        await records.call(
            "CloseDossier",
            R.CloseDossierRequest(
                name=name, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()
            ),
            me,
        )
        await records.call(
            "ReactivateDossier", R.ReactivateDossierRequest(name=name, request_id=rid()), me
        )
        wanted = {
            "dmp.records.dossier.created",
            "dmp.records.document.added",
            "dmp.records.document.replaced",
            "dmp.records.document.visibility_changed",
            "dmp.records.document.deleted",
            "dmp.records.dossier.closed",
            "dmp.records.dossier.reactivated",
        }
        for _ in range(100):
            mine = [(s, p) for s, p in got if name.encode() in p]
            if wanted <= {s for s, _ in mine}:
                break
            await asyncio.sleep(0.05)
        subjects = {s for s, _ in mine}
        assert wanted <= subjects
        for subject, payload in mine:
            assert b"QWERTY" not in payload
            if subject == "dmp.records.dossier.created":
                ev = events_pb2.DossierCreated.FromString(payload)
                assert ev.patient_ins == ins
                assert ev.header.event_id
            elif subject == "dmp.records.document.replaced":
                changed = events_pb2.DocumentChanged.FromString(payload)
                assert changed.replaces == created.name
                assert changed.class_code == "10"
            elif subject == "dmp.records.document.visibility_changed":
                assert events_pb2.DocumentChanged.FromString(payload).invisible_to_patient
    finally:
        await sub.unsubscribe()
        await nc.close()


def _report_lines(output: str, verb: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{verb} ")]


async def test_purge_after_retention(
    records: RecordsCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_name, old_ins = await new_dossier(records)
    await add_doc(records, old_name, content=b"ancien document purgeable")
    recent_name, recent_ins = await new_dossier(records)
    for name, ins in ((old_name, old_ins), (recent_name, recent_ins)):
        await records.call(
            "CloseDossier",
            R.CloseDossierRequest(
                name=name, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()
            ),
            patient(ins),
        )
    long_ago = datetime.now(UTC) - timedelta(days=365 * 10 + 5)
    async with records.app.db() as session, session.begin():
        await session.execute(
            update(dossiers)
            .where(dossiers.c.dossier_id == old_name.split("/")[1])
            .values(close_time=long_ago)
        )
    async with records.app.db() as session:
        old_pk = (
            await session.execute(
                select(dossiers.c.id).where(dossiers.c.dossier_id == old_name.split("/")[1])
            )
        ).scalar_one()
    # Stored answers may hold medical content: they go with the record.
    assert await records.count("processed_requests", dossier_pk=old_pk) >= 2
    # The operator command, against the service's database.
    monkeypatch.setenv("DMP_DATABASE_URL", records.settings.database_url)
    dry = await asyncio.to_thread(CliRunner().invoke, app, ["records", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    # Other services of the session log to the same captured stream: read the report lines only.
    dry_report = _report_lines(dry.output, "would purge")
    assert any(line.startswith(f"would purge {old_name}") for line in dry_report)
    assert not any(recent_name in line for line in dry_report)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["records", "purge"])
    assert result.exit_code == 0, result.output
    report = _report_lines(result.output, "purged")
    purged_line = next(line for line in report if line.startswith(f"purged {old_name}"))
    assert purged_line.endswith("documents 1")
    assert not any(recent_name in line for line in report)
    assert await records.count("dossiers", dossier_id=old_name.split("/")[1]) == 0
    assert await records.count("processed_requests", dossier_pk=old_pk) == 0
    assert await records.count("dossiers", dossier_id=recent_name.split("/")[1]) == 1
    await expect_error(
        records.call("GetDossier", R.GetDossierRequest(name=old_name), patient(old_ins)),
        C.NOT_FOUND,
    )
    # Search index rows are gone with the record (SQLite contentless FTS delete / PG cascade).
    other, _ = await new_dossier(records)
    await add_doc(records, other, content=b"ancien document purgeable")
    out = await records.call(
        "SearchDocuments", R.SearchDocumentsRequest(parent=other, query="purgeable"), professional()
    )
    assert len(out.results) == 1


async def test_kek_rotation_rewraps_data_keys(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    created = await add_doc(records, name, content=b"rotation test")
    settings = records.settings
    old_id, old_keys = settings.records_kek_id, dict(settings.records_keks)
    new_key = SecretStr(base64.b64encode(b"n" * 32).decode())
    try:
        settings.records_keks = {**old_keys, "k2": new_key}
        settings.records_kek_id = "k2"
        count = await operations.rotate_keys(records.app.db, settings)
        assert count >= 1
        async with records.app.db() as session:
            kek_ids = set((await session.execute(select(dossiers.c.kek_id))).scalars())
        assert kek_ids == {"k2"}
        # The old KEK can now be retired: content still reads with the new one only.
        settings.records_keks = {"k2": new_key}
        got = await records.call(
            "GetDocument", R.GetDocumentRequest(name=created.name), professional()
        )
        assert got.content == b"rotation test"
        assert await operations.rotate_keys(records.app.db, settings) == 0
    finally:
        settings.records_keks = {**old_keys, "k2": new_key}
        settings.records_kek_id = old_id
        await operations.rotate_keys(records.app.db, settings)
        settings.records_keks = old_keys


async def test_migration_upgrade_downgrade(databases: DatabaseFactory) -> None:
    url = await databases.create("records_mig")
    await migrations.upgrade("records", url)
    await migrations.downgrade("records", url)
    await migrations.upgrade("records", url)
