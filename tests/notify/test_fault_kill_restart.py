"""Fault tests: 1,000 documents while notify is stopped mid-batch twice and SMTP goes down.

notify runs as a real process against its own nats-server, database and SMTP
sink. Two ways of stopping it, two guarantees:

- SIGTERM (what an orchestrator sends first): notify drains — takes no new
  event, lets the sends in flight get their 250 and commits them, exits 0.
  Across two such restarts and the SMTP outage (until the restarted process
  has put two rounds of failed sends back for a retry) the sink gets exactly 1,000
  e-mails. The sink holds each message 20 ms before accepting it, so the test
  can check that sends really were in flight when the signal landed.
- SIGKILL: a message the relay accepted just before the kill and not yet
  recorded as sent is sent again (same Message-ID) once its lease expires.
  Nothing is lost, every document is announced, and the extra copies stay
  within the send slots in flight per kill.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dmp_dev.testing.databases import DatabaseFactory
from tests.notify.faultkit import EMAIL, Rig, fault_rig, retried_while_down, settle, wait_for

pytestmark = pytest.mark.slow

DOCUMENTS = 1000
CONCURRENCY = 16
GRACE_S = 10.0
# Failed sends the restarted process puts back for a retry while the relay is down: two
# rounds of its send slots, so the outage spans retries with backoff.
RETRIES_WHILE_DOWN = 2 * CONCURRENCY


async def signal_mid_batch(rig: Rig, at_least: int) -> int:
    """Wait until `at_least` e-mails arrived and at least two are in the relay's hands."""
    await wait_for(
        lambda: rig.raw() >= at_least and rig.sink.in_data >= 2,
        60,
        f"{at_least} e-mails with sends in flight",
    )
    return rig.sink.in_data


def check_everything_announced(rig: Rig, announced: set[str]) -> None:
    assert len(rig.published) == DOCUMENTS
    assert announced == set(rig.published)
    assert all(m.rcpt_tos == [EMAIL] for m in rig.sink.messages)


async def test_sigterm_twice_mid_batch_and_smtp_down_exactly_1000_emails(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    async with fault_rig(
        databases,
        tmp_path,
        accept_delay_s=0.02,
        DMP_DISPATCH_CONCURRENCY=str(CONCURRENCY),
        DMP_SHUTDOWN_GRACE_S=str(GRACE_S),
    ) as rig:
        proc = rig.start()
        publishing = asyncio.create_task(rig.publish_documents(DOCUMENTS))

        # Stop 1: mid-stream, sends in the relay's hands.
        in_flight_1 = await signal_mid_batch(rig, 250)
        before_1 = rig.raw()
        await rig.terminate(proc, GRACE_S)
        after_1 = rig.raw()
        proc = rig.start()
        await publishing

        # Stop 2 with the relay going down right after the signal: the sends in flight
        # are cut, recorded for a retry, and the process exits.
        in_flight_2 = await signal_mid_batch(rig, 550)
        await rig.terminate(proc, GRACE_S, after_signal=rig.sink.stop)
        retries = len(rig.log_events("notification_retry"))
        rig.start()  # comes up with the relay still down: retries with backoff
        await retried_while_down(rig, retries, RETRIES_WHILE_DOWN, 60)
        rig.sink.start()

        await settle(rig, DOCUMENTS, 90)
        raw, distinct = rig.raw(), rig.distinct()
        drains = rig.log_events("dispatch_drained")
        print(
            f"SIGTERM fault test: {raw} e-mails received, {distinct} distinct; in the relay's "
            f"hands at the signals: {in_flight_1}, {in_flight_2}; drains: "
            f"{[(d['finished'], d['abandoned']) for d in drains]}; "
            f"stop 1 completed {after_1 - before_1} sends after the signal"
        )
        assert raw == DOCUMENTS
        assert distinct == DOCUMENTS
        check_everything_announced(rig, await rig.announced_events())
        # Both stops abandoned nothing; the first, relay up, finished the sends in flight
        # (the relay accepted them after the SIGTERM). The second's were cut by the relay
        # going down, possibly before the drain began: they were retried later.
        assert len(drains) == 2
        assert all(d["abandoned"] == 0 for d in drains)
        assert drains[0]["finished"] >= 1
        assert after_1 > before_1
        assert (await rig.statuses()) == {"sent": DOCUMENTS}


async def test_sigkill_twice_mid_batch_loses_nothing_and_resends_little(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    async with fault_rig(databases, tmp_path, DMP_DISPATCH_CONCURRENCY=str(CONCURRENCY)) as rig:
        proc = rig.start()
        publishing = asyncio.create_task(rig.publish_documents(DOCUMENTS))
        await wait_for(lambda: rig.raw() >= 250, 60, "250 e-mails")
        rig.kill(proc)
        proc = rig.start()
        await publishing
        await wait_for(lambda: rig.raw() >= 550, 60, "550 e-mails")
        rig.kill(proc)
        await asyncio.to_thread(rig.sink.stop)
        retries = len(rig.log_events("notification_retry"))
        rig.start()
        await retried_while_down(rig, retries, RETRIES_WHILE_DOWN, 60)
        rig.sink.start()

        await settle(rig, DOCUMENTS, 90)
        raw, distinct, copies = rig.raw(), rig.distinct(), rig.duplicates()
        windows = sorted(e["unrecorded_ms"] for e in rig.log_events("notification_sent"))
        print(
            f"SIGKILL fault test: {raw} e-mails received, {distinct} distinct, "
            f"{raw - distinct} second copies; accepted-to-recorded window over "
            f"{len(windows)} sends: p50 {windows[len(windows) // 2]:.2f} ms, "
            f"p99 {windows[len(windows) * 99 // 100]:.2f} ms, max {windows[-1]:.2f} ms"
        )
        assert distinct == DOCUMENTS
        check_everything_announced(rig, await rig.announced_events())
        # A copy only for what a kill caught between the relay's 250 and the commit.
        assert raw - DOCUMENTS <= 2 * CONCURRENCY
        # A second copy is the same e-mail: same Message-ID, subject and text.
        for message_id in copies:
            same = [m for m in rig.sink.messages if m.message["Message-ID"] == message_id]
            assert len({(m.subject, m.text) for m in same}) == 1
        assert (await rig.statuses()) == {"sent": DOCUMENTS}
