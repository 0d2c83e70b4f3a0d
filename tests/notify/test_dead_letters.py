"""Dead letters: poison events, deliveries failing N times, listing and replay (API and CLI)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from typer.testing import CliRunner

from dmp.notify.v1 import notify_pb2
from dmp_cli.main import app as cli
from kit import nats as kit_nats
from services.notify import deadletters, models
from tests.notify.conftest import EventsEnv
from tests.notify.eventkit import (
    document,
    dossier_created,
    eventually,
    new_dossier,
    new_email,
    new_id,
    new_ins,
    prefs,
    publish,
)
from tests.notify.test_event_notifications import handled, newest_with_status, set_prefs, settled


async def wait_dead(
    env: EventsEnv, match: object, timeout_s: float = 10.0
) -> deadletters.DeadLetter:
    found: list[deadletters.DeadLetter] = []

    async def look() -> bool:
        found[:] = [d for d in await deadletters.list_dead(env.js) if match(d)]  # type: ignore[operator]
        return bool(found)

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await look():
        assert asyncio.get_running_loop().time() < deadline, "no dead letter"
        await asyncio.sleep(0.05)
    return found[0]


async def test_poison_event_is_dead_lettered_and_the_consumer_goes_on(
    notify_events: EventsEnv,
) -> None:
    env = notify_events
    ins, dossier, email = new_ins(), new_dossier(), new_email()
    await set_prefs(env, prefs(ins, email))
    poison_id = new_id()
    await publish(
        env.js, "dmp.records.document.added", b"\xff\x00 not a protobuf", msg_id=poison_id
    )
    # Decodes, but names no dossier: as poisonous.
    empty = document(dossier)
    empty.dossier = ""
    await publish(env.js, "dmp.records.document.added", empty)
    await publish(env.js, "dmp.records.dossier.created", dossier_created(dossier, ins))
    await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="mail after poison")
    letter = await wait_dead(
        env, lambda d: d.headers.get("Nats-Msg-Id") is None and d.data.startswith(b"\xff\x00")
    )
    assert letter.subject == "dmp.notify.deadletter.document_added"
    assert letter.original_subject == "dmp.records.document.added"
    assert letter.reason == "not_processed"


async def test_delivery_failing_n_times_is_dead_lettered_then_replayed(
    notify_events: EventsEnv,
) -> None:
    env = notify_events
    ins, dossier, email = new_ins(), new_dossier(), new_email()
    await set_prefs(env, prefs(ins, email))
    await publish(env.js, "dmp.records.dossier.created", dossier_created(dossier, ins))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 1, what="creation e-mail")
    event = document(dossier)
    env.smtp.stop()
    try:
        await publish(env.js, "dmp.records.document.added", event)
        letter = await wait_dead(env, lambda d: d.event_id == event.header.event_id)
    finally:
        env.smtp.start()
    assert letter.subject == "dmp.notify.deadletter.document_added"
    assert letter.reason == "delivery_failed"
    assert letter.error.startswith("SMTPConnect")
    newest = await newest_with_status(env, ins, notify_pb2.DELIVERY_STATUS_FAILED)
    assert newest.attempts == env.app.notify_settings.notification_attempts
    assert len(env.smtp.messages_to(email)) == 1

    # Redelivery of the source event does not revive a failed notification...
    again = await publish(env.js, "dmp.records.document.added", event, msg_id=new_id())
    await handled(env, "dmp.records.document.added", again)
    await settled(env, ins)
    assert len(env.smtp.messages_to(email)) == 1
    # ...an operator's replay does, once.
    await deadletters.replay(env.js, letter)
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="replayed e-mail")
    assert all(d.seq != letter.seq for d in await deadletters.list_dead(env.js))
    await newest_with_status(env, ins, notify_pb2.DELIVERY_STATUS_SENT)
    replays = await env.js.stream_info(kit_nats.STREAMS["notify"].name)
    await deadletters.replay(env.js, letter)  # the same dead letter again: de-duplicated...
    # ...at publication: the stream holds no new message, so there is nothing to consume.
    after = await env.js.stream_info(kit_nats.STREAMS["notify"].name)
    assert after.state.last_seq == replays.state.last_seq
    await settled(env, ins)
    assert len(env.smtp.messages_to(email)) == 2
    async with env.app.db() as session:
        row = (
            (
                await session.execute(
                    select(models.notifications).where(
                        models.notifications.c.event_id == event.header.event_id
                    )
                )
            )
            .mappings()
            .one()
        )
    assert row["dead_count"] == 1


async def test_cli_lists_and_replays(notify_events: EventsEnv, monkeypatch: object) -> None:
    env = notify_events
    ins, dossier, email = new_ins(), new_dossier(), new_email()
    await set_prefs(env, prefs(ins, email))
    await publish(env.js, "dmp.records.dossier.created", dossier_created(dossier, ins))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 1, what="creation e-mail")
    event = document(dossier)
    env.smtp.stop()
    try:
        await publish(env.js, "dmp.records.document.added", event)
        letter = await wait_dead(env, lambda d: d.event_id == event.header.event_id)
    finally:
        env.smtp.start()
    url = env.app.notify_settings.nats_url
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env={"DMP_NATS_URL": url, "COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return result.output

    listed = await asyncio.to_thread(run, "notify", "dlq", "list", "--kind", "document_added")
    assert event.header.event_id in listed
    assert email not in listed
    replayed = await asyncio.to_thread(run, "notify", "dlq", "replay", "--seq", str(letter.seq))
    assert "1 dead letter(s) replayed" in replayed
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="replayed e-mail")
    listed = await asyncio.to_thread(run, "notify", "dlq", "list", "--kind", "document_added")
    assert event.header.event_id not in listed
