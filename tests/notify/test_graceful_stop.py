"""SIGTERM stops notify promptly, under load and with a stalled relay, losing nothing.

An orchestrator SIGKILLs a process still running at the end of its grace
period: a notify that hangs on SIGTERM turns every stop into a crash (and a
crash into possible second copies). notify must exit by itself, status 0,
within `DMP_SHUTDOWN_GRACE_S`, and the next process must deliver the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import free_port
from tests.notify.faultkit import fault_rig, settle, wait_for

pytestmark = pytest.mark.slow


async def test_sigterm_under_load_exits_within_grace_and_loses_nothing(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    documents, grace = 400, 5.0
    # A slow relay (50 ms per message) keeps all 16 send slots busy at the signal.
    async with fault_rig(
        databases, tmp_path, accept_delay_s=0.05, DMP_SHUTDOWN_GRACE_S=str(grace)
    ) as rig:
        proc = rig.start()
        await rig.publish_documents(documents)
        await wait_for(lambda: rig.raw() >= 50 and rig.sink.in_data >= 4, 60, "sends in flight")
        in_flight = rig.sink.in_data
        took = await rig.terminate(proc, grace)
        (drained,) = rig.log_events("dispatch_drained")
        print(f"SIGTERM under load: exited in {took:.2f} s, {in_flight} sends in flight, {drained}")
        assert drained["finished"] >= 1
        assert drained["abandoned"] == 0
        assert rig.raw() < documents  # stopped mid-batch: the rest is for the next process

        rig.start()
        await settle(rig, documents, 90)
        assert rig.raw() == documents
        assert await rig.announced_events() == set(rig.published)
        assert (await rig.statuses()) == {"sent": documents}


async def test_sigterm_with_stalled_relay_exits_within_grace_and_loses_nothing(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """A relay that accepts connections and never answers must not hold the stop."""
    # notify gives the stuck sends all but 3 s of its grace (at least half) and keeps the rest
    # for closing and the interpreter's exit: with 6 s, those 3 s, as with production's 20 s
    # (4 s left 2 s, which a loaded machine sometimes took). The sends stay stuck past the
    # sends' share (SMTP timeout 6 s), so the drain does abandon them.
    documents, grace = 40, 6.0
    connections: list[asyncio.StreamWriter] = []

    async def stall(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # no greeting, ever

    stalled = await asyncio.start_server(stall, "127.0.0.1", free_port())
    stalled_port = stalled.sockets[0].getsockname()[1]
    try:
        async with fault_rig(
            databases,
            tmp_path,
            DMP_SHUTDOWN_GRACE_S=str(grace),
            DMP_SMTP_TIMEOUT_S="6",
            DMP_SENDING_LEASE_S="7",
        ) as rig:
            proc = rig.start(DMP_SMTP_PORT=str(stalled_port))
            await rig.publish_documents(documents)
            await wait_for(lambda: len(connections) >= 4, 30, "sends stuck on the relay")
            took = await rig.terminate(proc, grace)
            (drained,) = rig.log_events("dispatch_drained")
            print(f"SIGTERM, stalled relay: exited in {took:.2f} s, {drained}")
            # Sends the relay never answered are left to their lease, not waited for.
            assert drained["abandoned"] >= 1
            assert rig.raw() == 0

            rig.start()  # the real relay
            await settle(rig, documents, 60)
            assert rig.raw() == documents
            assert await rig.announced_events() == set(rig.published)
    finally:
        for writer in connections:
            writer.close()
        stalled.close()
        with contextlib.suppress(Exception):
            await stalled.wait_closed()


async def test_sigterm_while_nats_is_unreachable_exits_within_grace(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    """The hang once seen: NATS away, console logs, and SIGTERM never completed.

    Every failed connection attempt was logged with a rendered traceback, which
    kept the event loop too busy to ever finish the stop.
    """
    grace = 5.0
    async with fault_rig(
        databases,
        tmp_path,
        DMP_SHUTDOWN_GRACE_S=str(grace),
        DMP_LOG_JSON="false",
        DMP_NATS_URL=f"nats://127.0.0.1:{free_port()}",
    ) as rig:
        proc = rig.start()
        await wait_for(
            lambda: rig.log_path.read_text().count("nats_connection_error") >= 3,
            30,
            "a few failed connection attempts",
        )
        took = await rig.terminate(proc, grace)
        print(f"SIGTERM, NATS unreachable: exited in {took:.2f} s")
