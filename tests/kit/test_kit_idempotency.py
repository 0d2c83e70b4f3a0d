"""kit.idempotency: the one set of AIP-155 rules, on the run's database backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import Column, Integer, String, Table, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.consent.v1 import consent_pb2
from dmp_dev.testing.databases import DatabaseFactory
from kit.db import create_engine, service_metadata, session_factory, transaction
from kit.errors import ServiceError
from kit.idempotency import (
    ANONYMOUS,
    Key,
    Ledger,
    check_request_id,
    processed_requests_table,
    request_hash,
)
from tests.waits import until

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
METHOD = "GrantAccess"
metadata = service_metadata()
requests = processed_requests_table(metadata, Column("owner", String(32), nullable=True))
# Stands for the work a handler does in the same transaction as `remember`.
work = Table(
    "work",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("note", String(32), nullable=False),
)


def grant(
    rpps: str = "81234567890", request_id: str | None = None
) -> consent_pb2.GrantAccessRequest:
    return consent_pb2.GrantAccessRequest(
        parent="dossiers/d1",
        professional_rpps=rpps,
        request_id=request_id or str(uuid.uuid4()),
    )


ANSWER = consent_pb2.AccessRule(name="dossiers/d1/accessRules/r1")


def refusal(error: pytest.ExceptionInfo[ServiceError]) -> tuple[grpc.StatusCode, str]:
    return error.value.code, error.value.reason


@pytest.fixture
async def sessions(databases: DatabaseFactory) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(await databases.create("kit_idempotency"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


LEDGER = Ledger(requests)


async def _replay(
    sessions: async_sessionmaker[AsyncSession], key: Key, scope: str = "patient-1"
) -> consent_pb2.AccessRule | None:
    async with transaction(sessions) as session:
        return await LEDGER.replay(
            session, key, scope=scope, method=METHOD, response_type=consent_pb2.AccessRule
        )


async def _remember(
    sessions: async_sessionmaker[AsyncSession],
    key: Key,
    response: consent_pb2.AccessRule | None = ANSWER,
    note: str = "first",
) -> None:
    async with transaction(sessions) as session:
        await session.execute(work.insert().values(note=note))
        await LEDGER.remember(
            session, key, scope="patient-1", method=METHOD, response=response, now=NOW
        )


@contextmanager
def statements_sent(sessions: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """The SQL statements the sessions' engine sends meanwhile, as they are sent."""
    engine = sessions.kw["bind"].sync_engine
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))  # (connection, cursor, statement, ...)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def waiting_twin(sessions: async_sessionmaker[AsyncSession], sent: list[str]) -> bool:
    """The twin is blocked behind the first's open transaction: on SQLite once its first
    write is sent (the file is locked by the first), on PostgreSQL once the server shows a
    session waiting on a lock (the key's unique index entry)."""
    if not any(statement.lstrip().upper().startswith("INSERT") for statement in sent):
        return False
    engine = sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        return True
    async with engine.connect() as conn:
        waiting = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(waiting.scalar_one()) > 0


async def _count(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


# -- request ids and hashes (no database) ---------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "REQUEST_ID_REQUIRED"),
        ("r-1", "REQUEST_ID_INVALID"),
        ("x" * 65, "REQUEST_ID_INVALID"),
        # A fixed value: test ids must be the same in every pytest-xdist worker.
        ("2f1c5a7e-8b3d-4c9a-a6e2-5d7b9f0c1e34" + "0", "REQUEST_ID_INVALID"),
    ],
)
def test_bad_request_ids_are_refused(value: str, reason: str) -> None:
    with pytest.raises(ServiceError) as error:
        check_request_id(value)
    assert refusal(error) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert error.value.field_violations.keys() == {"request_id"}


def test_request_ids_are_canonical_uuids() -> None:
    value = uuid.uuid4()
    assert check_request_id(str(value).upper()) == str(value)
    assert check_request_id(value.hex) == str(value)


def test_hash_ignores_the_request_id_only() -> None:
    first, retry = grant(request_id=str(uuid.uuid4())), grant(request_id=str(uuid.uuid4()))
    assert request_hash(first) == request_hash(retry)
    assert request_hash(first) != request_hash(grant(rpps="81234567891"))
    assert first.request_id  # the caller's message is left as it was


def test_peppered_hash_is_keyed() -> None:
    request = grant()
    keyed = request_hash(request, b"pepper-1")
    assert keyed != request_hash(request)
    assert keyed != request_hash(request, b"pepper-2")
    assert keyed == request_hash(request, b"pepper-1")


# -- replay and remember (run's backend) ---------------------------------------


async def test_same_request_gets_the_stored_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    request = grant()
    key = LEDGER.key(request)
    assert await _replay(sessions, key) is None
    await _remember(sessions, key)
    assert await _replay(sessions, LEDGER.key(request)) == ANSWER


async def test_same_key_with_another_request_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    request = grant()
    await _remember(sessions, LEDGER.key(request))
    other = grant(rpps="81234567891", request_id=request.request_id)
    with pytest.raises(ServiceError) as error:
        await _replay(sessions, LEDGER.key(other))
    assert refusal(error) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")


async def test_keys_are_per_scope_and_method(sessions: async_sessionmaker[AsyncSession]) -> None:
    key = LEDGER.key(grant())
    await _remember(sessions, key)
    assert await _replay(sessions, key, scope="patient-2") is None
    assert await _replay(sessions, key, scope=ANONYMOUS) is None
    async with transaction(sessions) as session:
        assert (
            await LEDGER.replay(
                session,
                key,
                scope="patient-1",
                method="RevokeAccess",
                response_type=consent_pb2.AccessRule,
            )
            is None
        )


async def test_answer_that_held_a_secret_is_not_replayed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = LEDGER.key(grant())
    await _remember(sessions, key, response=None)
    with pytest.raises(ServiceError) as error:
        await _replay(sessions, key)
    assert refusal(error) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ALREADY_PROCESSED")


async def test_rows_without_a_hash_replay_without_comparing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Rows migrated from copies that kept no comparable hash keep their old meaning."""
    request = grant()
    async with transaction(sessions) as session:
        await session.execute(
            requests.insert().values(
                scope="patient-1",
                method=METHOD,
                request_id=request.request_id,
                request_hash=None,
                response=ANSWER.SerializeToString(),
                create_time=NOW,
            )
        )
    other = grant(rpps="81234567891", request_id=request.request_id)
    assert await _replay(sessions, LEDGER.key(other)) == ANSWER


async def test_service_columns_are_stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    key = LEDGER.key(grant())
    async with transaction(sessions) as session:
        await LEDGER.remember(
            session, key, scope="s", method=METHOD, response=ANSWER, now=NOW, owner="dossier-9"
        )
    async with sessions() as session:
        row = (
            await session.execute(select(requests).where(requests.c.request_id == key.request_id))
        ).one()
    assert (row.owner, row.create_time, row.request_hash) == ("dossier-9", NOW, key.request_hash)


async def test_concurrent_twin_is_aborted_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = LEDGER.key(grant())
    async with transaction(sessions) as first:
        await first.execute(work.insert().values(note="first"))
        await LEDGER.remember(
            first, key, scope="patient-1", method=METHOD, response=ANSWER, now=NOW
        )
        # The twin writes while the first is still open: it waits on the key (PostgreSQL)
        # or on the write lock (SQLite), then loses once the first commits.
        with statements_sent(sessions) as sent:
            twin = asyncio.create_task(_remember(sessions, key, note="twin"))
            await until(lambda: waiting_twin(sessions, sent), "the twin waiting on the first")
    with pytest.raises(ServiceError) as error:
        await twin
    assert refusal(error) == (grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")
    assert await _count(sessions, requests) == 1
    async with sessions() as session:
        notes = (await session.execute(select(work.c.note))).scalars().all()
    assert notes == ["first"]
    assert await _replay(sessions, key) == ANSWER
