"""One launcher-started platform for every fault test (fixture `live`, package scope).

The fault tests kill, stop and restart its processes (and its nats-server), so they do not
run on the session's `stack`; they share this one instead of one platform per module. Each
test leaves it running (it restarts what it stopped and checks every process is alive; if
it fails first, `whole_platform` restarts the rest before the next test) and works on
patients and records of its own, so no test depends on another's data.

Its settings are the union of what the tests need: a gateway that allows the load (rate
limits) and whose decision cache (1 s) is shorter than an outage; records, history_feed
and the gateway with a grace long enough for a machine under load (the Deployments use
20 s), history_feed committing each claims message of the drain test on its own;
notify with a sending lease that brings a killed process's claimed messages back
and enough send slots for the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack
from tests.faults.harness import (
    CLAIM_COMMIT_LINES,
    DISPATCH_CONCURRENCY,
    GATEWAY_ENV,
    start_nats,
)

GRACE = {"DMP_SHUTDOWN_GRACE_S": "20"}


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def live(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    extra_env = {
        "gateway": {**GATEWAY_ENV, **GRACE, "DMP_DECISION_CACHE_TTL_S": "1"},
        "records": GRACE,
        "history_feed": {**GRACE, "DMP_HISTORY_COMMIT_BATCH_LINES": str(CLAIM_COMMIT_LINES)},
        "notify": {
            "DMP_SENDING_LEASE_S": "8",
            "DMP_SMTP_TIMEOUT_S": "5",
            "DMP_DISPATCH_CONCURRENCY": str(DISPATCH_CONCURRENCY),
        },
    }
    var_dir = tmp_path_factory.mktemp("faults") / "var"
    async with running_stack(databases, var_dir, extra_env=extra_env) as stack:
        yield stack


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def whole_platform(live: LiveStack) -> None:
    """Each test starts on the whole platform, whatever the one before left: a failed test
    may end before starting again what it stopped."""
    proc = live.dev.nats.proc
    if proc is None or proc.poll() is not None:
        await asyncio.to_thread(start_nats, live)
    for process in live.dev.processes:
        if process.exited() is not None:
            await live.start_service(process.name)
