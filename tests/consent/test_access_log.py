"""The access log: append-only in the database, hash-chained, verifiable, patient-readable."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from dmp_dev.testing import principals
from tests.consent.helpers import A, C, emergency, grant, pro
from tests.fixtures.consent import ConsentHarness
from tests.waits import until


async def _decisions(consent: ConsentHarness, count: int = 5) -> tuple[str, str, str]:
    """A patient's grant (logged by GrantAccess itself: entry 1), then `count` reads."""
    dossier, ins = await consent.create_record()
    doctor = pro("10")
    await grant(consent, dossier, ins, doctor.rpps)
    for i in range(count):
        await consent.authorize(doctor, A.ACTION_READ, dossier, document_class_code=str(10 + i % 2))
    return dossier, ins, doctor.rpps


async def _tamper(consent: ConsentHarness, sql: str, **params: object) -> None:
    """Alter the log behind the service's back, bypassing the append-only trigger."""
    engine = consent.app.engine
    assert engine is not None
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(sql), params)
        else:
            await conn.execute(text("DROP TRIGGER access_log_no_update"))
            await conn.execute(text("DROP TRIGGER access_log_no_delete"))
            await conn.execute(text(sql), params)
            for verb in ("UPDATE", "DELETE"):
                await conn.execute(
                    text(
                        f"CREATE TRIGGER access_log_no_{verb.lower()} BEFORE {verb} ON access_log "
                        "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
                    )
                )


async def _verify(consent: ConsentHarness, dossier: str, ins: str) -> C.VerifyAccessLogResponse:
    return await consent.call(
        "VerifyAccessLog", C.VerifyAccessLogRequest(parent=dossier), principals.patient(ins)
    )


async def test_chain_is_intact_and_linked(consent: ConsentHarness) -> None:
    dossier, ins, _ = await _decisions(consent)
    report = await _verify(consent, dossier, ins)
    assert report.ok
    assert report.verified_entry_count == 6
    assert report.head_sequence == 6
    entries = await consent.history(dossier)
    assert [e.sequence for e in entries] == [6, 5, 4, 3, 2, 1]  # newest first
    assert entries[-1].previous_hash == "0" * 64
    for newer, older in itertools.pairwise(entries):
        assert newer.previous_hash == older.entry_hash
    assert report.head_hash == entries[0].entry_hash
    again = await consent.call(
        "VerifyAccessLog",
        C.VerifyAccessLogRequest(
            parent=dossier, anchor_hash=entries[2].entry_hash, anchor_sequence=entries[2].sequence
        ),
        principals.patient(ins),
    )
    assert again.ok


async def test_altered_row_is_pinpointed(consent: ConsentHarness) -> None:
    dossier, ins, _ = await _decisions(consent)
    target = next(e for e in await consent.history(dossier) if e.sequence == 3)
    await _tamper(
        consent,
        "UPDATE access_log SET reason = 'NO_GRANT', decision = 2 "
        "WHERE dossier = :d AND sequence = 3",
        d=dossier,
    )
    report = await _verify(consent, dossier, ins)
    assert not report.ok
    assert report.first_broken_sequence == 3
    assert report.first_broken_entry == target.name
    assert report.chain_break == C.CHAIN_BREAK_ENTRY_HASH_MISMATCH
    assert report.verified_entry_count == 2


async def test_rehashed_row_breaks_the_next_link(consent: ConsentHarness) -> None:
    """An attacker who also rewrites entry_hash is caught by the next entry's previous_hash."""
    dossier, ins, _ = await _decisions(consent)
    await _tamper(
        consent,
        "UPDATE access_log SET entry_hash = :h WHERE dossier = :d AND sequence = 2",
        d=dossier,
        h="f" * 64,
    )
    report = await _verify(consent, dossier, ins)
    assert (report.ok, report.first_broken_sequence) == (False, 2)
    assert report.chain_break == C.CHAIN_BREAK_ENTRY_HASH_MISMATCH


async def test_deleted_row_is_a_sequence_gap(consent: ConsentHarness) -> None:
    dossier, ins, _ = await _decisions(consent)
    await _tamper(consent, "DELETE FROM access_log WHERE dossier = :d AND sequence = 3", d=dossier)
    report = await _verify(consent, dossier, ins)
    assert (report.ok, report.first_broken_sequence) == (False, 4)
    assert report.chain_break == C.CHAIN_BREAK_SEQUENCE_GAP


@pytest.mark.parametrize(
    "statement", ["UPDATE access_log SET reason = 'X'", "DELETE FROM access_log"]
)
async def test_database_refuses_update_and_delete(consent: ConsentHarness, statement: str) -> None:
    dossier, _, _ = await _decisions(consent, 1)
    engine = consent.app.engine
    assert engine is not None
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(f"{statement} WHERE dossier = :d"), {"d": dossier})
    assert await consent.count("access_log", dossier) == 2


async def test_patient_history_paginates_newest_first(consent: ConsentHarness) -> None:
    dossier, ins, rpps = await _decisions(consent, 7)
    patient = principals.patient(ins)
    seen: list[int] = []
    token = ""
    while True:
        page = await consent.call(
            "ListAccessHistory",
            C.ListAccessHistoryRequest(parent=dossier, page_size=3, page_token=token),
            patient,
        )
        seen.extend(e.sequence for e in page.entries)
        for entry in page.entries:
            if entry.sequence > 1:  # entry 1 is the patient's own grant
                assert entry.principal.display_name == rpps  # no directory configured: the RPPS
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 8
    denied = await consent.call(
        "ListAccessHistory",
        C.ListAccessHistoryRequest(parent=dossier, filter="decision = DENIED"),
        patient,
    )
    assert denied.entries == []


async def test_retry_with_same_request_id_reuses_the_entry(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    first = await consent.authorize(
        principals.patient(ins), A.ACTION_READ, dossier, request_id="r-1"
    )
    again = await consent.authorize(
        principals.patient(ins), A.ACTION_READ, dossier, request_id="r-1"
    )
    assert first.access_log_entry == again.access_log_entry
    assert await consent.count("access_log", dossier) == 1


async def test_concurrent_decisions_on_a_record_share_one_commit(consent: ConsentHarness) -> None:
    """Group commit: decisions that queue while the record's log is busy are appended in one
    transaction and one COMMIT, each answered after it; the chain verifies and a
    retried request inside the group still reuses its entry."""
    dossier, ins = await consent.create_record()
    doctor = pro("10")
    await grant(consent, dossier, ins, doctor.rpps)
    writer = consent.app.runtime.log_writer
    engine = consent.app.engine
    assert engine is not None
    commits: list[int] = []  # commits of transactions that appended to the log

    def on_execute(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO access_log"):
            conn.info["appended"] = conn.info.get("appended", 0) + 1

    def on_commit(conn: Any) -> None:
        if conn.info.pop("appended", 0):
            commits.append(1)

    async with writer.lock(dossier):  # the log is busy: the decisions queue behind it
        calls = [
            asyncio.ensure_future(
                consent.authorize(doctor, A.ACTION_READ, dossier, request_id=f"g-{i % 20}")
            )
            for i in range(21)  # the last one retries the first request
        ]
        await until(lambda: writer.waiting(dossier) == 21, "21 decisions queued")
        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
        event.listen(engine.sync_engine, "commit", on_commit)
    try:
        answers = await asyncio.gather(*calls)
    finally:
        event.remove(engine.sync_engine, "commit", on_commit)
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    assert len(commits) == 1
    assert all(a.decision == C.DECISION_ALLOWED for a in answers)
    assert len({a.access_log_entry for a in answers}) == 20
    assert answers[0].access_log_entry == answers[20].access_log_entry
    assert await consent.count("access_log", dossier) == 21  # the grant, then 20 reads
    report = await _verify(consent, dossier, ins)
    assert report.ok
    assert report.verified_entry_count == 21
    entries = await consent.history(dossier)
    order = {entry.name: entry.sequence for entry in entries}
    assert sorted(order[a.access_log_entry] for a in answers[:20]) == list(range(2, 22))


async def test_emergency_entries_carry_mode_and_justification(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    await emergency(consent, dossier, pro("10"))
    entries = await consent.history(dossier)
    assert entries[0].mode == 2
    assert entries[0].justification.startswith("Patient")
    filtered = await consent.call(
        "ListAccessHistory",
        C.ListAccessHistoryRequest(parent=dossier, filter="mode = BRIS_DE_GLACE"),
        principals.patient(ins),
    )
    assert len(filtered.entries) == 1
    since = entries[0].time.ToDatetime().isoformat() + "Z"
    recent = await consent.call(
        "ListAccessHistory",
        C.ListAccessHistoryRequest(
            parent=dossier, filter=f'time >= "{since}" AND mode = ACCESS_MODE_BRIS_DE_GLACE'
        ),
        principals.patient(ins),
    )
    assert [e.name for e in recent.entries] == [entries[0].name]
    later = await consent.call(
        "ListAccessHistory",
        C.ListAccessHistoryRequest(parent=dossier, filter=f'time > "{since}"'),
        principals.patient(ins),
    )
    assert later.entries == []
