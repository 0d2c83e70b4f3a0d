"""kit.outbox against a real nats-server and the run's database backend: an event is
published if and only if its transaction committed, exactly once per event id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import wrappers_pb2
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp_dev.launcher.nats_server import NatsServer, free_port
from dmp_dev.testing.databases import DatabaseFactory
from kit import nats as kit_nats
from kit.db import create_engine, session_factory, transaction
from kit.outbox import OutboxRelay, add_event, outbox_table


class Outbox:
    """A test database with only the outbox table, and a private stream."""

    def __init__(self, url: str, sessions: async_sessionmaker[AsyncSession], table: Table) -> None:
        self.url = url
        self.sessions = sessions
        self.table = table
        tag = uuid.uuid4().hex[:8]
        self.subject_prefix = f"kittest.{tag}"
        self.stream = kit_nats.StreamSpec(f"KITTEST_{tag}", (f"{self.subject_prefix}.>",))

    def subject(self, verb: str) -> str:
        return f"{self.subject_prefix}.thing.{verb}"

    async def add(self, verb: str = "created", ident: str = "id-1") -> str:
        async with transaction(self.sessions) as session:
            return await add_event(
                session, self.table, self.subject(verb), wrappers_pb2.StringValue(value=ident)
            )

    async def unpublished(self) -> int:
        t = self.table
        async with self.sessions() as session:
            query = select(func.count()).select_from(t).where(t.c.published_at.is_(None))
            return int((await session.execute(query)).scalar_one())

    async def rows(self) -> int:
        async with self.sessions() as session:
            query = select(func.count()).select_from(self.table)
            return int((await session.execute(query)).scalar_one())


@pytest.fixture
async def outbox(databases: DatabaseFactory) -> AsyncIterator[Outbox]:
    url = await databases.create("outbox")
    metadata = MetaData()
    table = outbox_table(metadata)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield Outbox(url, session_factory(engine), table)
    await engine.dispose()


@pytest.fixture
async def js(nats_url: str, outbox: Outbox) -> AsyncIterator[Any]:
    nc = await kit_nats.connect(nats_url, "kittest")
    context = nc.jetstream()
    await kit_nats.ensure_stream(context, outbox.stream)
    yield context
    await context.delete_stream(outbox.stream.name)
    await nc.close()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def _none_left(outbox: Outbox) -> bool:
    return await outbox.unpublished() == 0


def _relay(outbox: Outbox, js: Any) -> OutboxRelay:
    return OutboxRelay(outbox.sessions, outbox.table, js, database_url=outbox.url)


async def _messages(js: Any, outbox: Outbox) -> int:
    return int((await js.stream_info(outbox.stream.name)).state.messages)


async def test_relay_publishes_committed_event_with_msg_id(outbox: Outbox, js: Any) -> None:
    event_id = await outbox.add(ident="dossier-42")
    assert await _relay(outbox, js).publish_pending() == 1
    message = await js.get_msg(outbox.stream.name, seq=1)
    assert message.subject == outbox.subject("created")
    assert message.headers["Nats-Msg-Id"] == event_id
    assert wrappers_pb2.StringValue.FromString(message.data).value == "dossier-42"
    assert await outbox.unpublished() == 0
    assert await _relay(outbox, js).publish_pending() == 0


async def test_events_go_out_in_commit_order(outbox: Outbox, js: Any) -> None:
    ids = [await outbox.add(ident=f"id-{i}") for i in range(5)]
    assert await _relay(outbox, js).publish_pending() == 5
    seen = [
        (await js.get_msg(outbox.stream.name, seq=i + 1)).headers["Nats-Msg-Id"] for i in range(5)
    ]
    assert seen == ids


async def test_republishing_an_event_is_deduplicated(outbox: Outbox, js: Any) -> None:
    event_id = await outbox.add()
    relay = _relay(outbox, js)
    assert await relay.publish_pending() == 1
    # A relay that crashed after publishing but before marking the row publishes again.
    async with transaction(outbox.sessions) as session:
        await session.execute(outbox.table.update().values(published_at=None))
    assert await relay.publish_pending() == 1
    ack = await js.publish(outbox.subject("created"), b"x", headers={"Nats-Msg-Id": event_id})
    assert ack.duplicate
    assert await _messages(js, outbox) == 1


async def test_rolled_back_transaction_publishes_nothing(outbox: Outbox, js: Any) -> None:
    async def failing_change() -> None:
        async with transaction(outbox.sessions) as session:
            await add_event(
                session, outbox.table, outbox.subject("created"), wrappers_pb2.StringValue()
            )
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert await outbox.rows() == 0
    assert await _relay(outbox, js).publish_pending() == 0
    assert await _messages(js, outbox) == 0


async def test_running_relay_publishes_soon_after_commit(outbox: Outbox, js: Any) -> None:
    relay = _relay(outbox, js)
    relay.start()
    try:
        await outbox.add()
        relay.notify()
        await _eventually(lambda: _none_left(outbox), 10)
    finally:
        await relay.stop()
    assert await _messages(js, outbox) == 1


async def test_rows_wait_while_nats_is_down_then_go_out(outbox: Outbox, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", free_port()).start()
    nc = await kit_nats.connect(server.url, "kittest")
    try:
        js = nc.jetstream(timeout=1.0)
        await kit_nats.ensure_stream(js, outbox.stream)
        server.stop()
        await outbox.add(ident="a")
        await outbox.add(ident="b")
        relay = _relay(outbox, js)
        assert await relay.publish_pending() == 0
        assert await outbox.unpublished() == 2

        server.start()  # same port, same store: the client reconnects by itself

        async def reconnected() -> bool:
            return bool(nc.is_connected)

        async def relayed() -> bool:
            await relay.publish_pending()
            return await _none_left(outbox)

        await _eventually(reconnected, 20)
        await _eventually(relayed, 20)
        assert await outbox.unpublished() == 0
        # Publishes buffered while disconnected may have landed too: still one per event.
        assert await _messages(js, outbox) == 2
    finally:
        await nc.close()
        server.stop()
