"""2 replicas of every service, 2 gateways, 3 NATS nodes: one of each killed under load, no
caller notices (tests/replicas/scenario.py says what runs and what is counted).

PostgreSQL only: replicas share their service's database, and two processes writing one SQLite
file would serialize on its lock and race each other's migrations-free start-up checks; the
platform's replicas are a PostgreSQL deployment (docs/ARCHITECTURE.md, "Deployment").
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack
from tests.replicas.scenario import (
    BLOCK_WITHIN_S,
    NATS_NODES,
    REPLICAS,
    run_scenario,
    stack_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("replicas")]


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def cluster(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    if databases.kind != "postgresql":
        pytest.skip(
            "replicas need PostgreSQL: two processes on one SQLite file serialize on its "
            "write lock (see docs/ARCHITECTURE.md, Deployment)"
        )
    var_dir = tmp_path_factory.mktemp("replicas") / "var"
    async with running_stack(
        databases, var_dir, extra_env=stack_env(), replicas=REPLICAS, nats_nodes=NATS_NODES
    ) as stack:
        yield stack


async def test_one_replica_of_each_killed_under_load_is_invisible(cluster: LiveStack) -> None:
    outcome = await run_scenario(cluster)
    summary = outcome.summary()
    print(f"\nreplica faults: {summary}")
    assert summary["client_errors"] == 0, summary["error_samples"]
    assert outcome.events_lost == 0
    assert outcome.events_doubled == 0
    # The AMO's claim lines: each in its care history exactly once; every login got its token.
    assert outcome.claim_lines > 0, summary
    assert outcome.claim_lines_lost == 0, summary
    assert outcome.claim_lines_doubled == 0, summary
    assert outcome.logins > 0, summary
    assert outcome.logins_failed == 0, summary
    assert not outcome.block_failures, outcome.block_failures
    assert summary["block_propagation_ms_max"] <= BLOCK_WITHIN_S * 1000, summary
    # notify-2's SIGKILL may resend what the sink accepted just before it (same Message-ID).
    assert outcome.emails_resent_same_message_id <= 4
    assert all(v is not None for v in outcome.first_ok_after_kill_s.values()), summary
    for process in cluster.dev.processes:
        assert process.exited() is None, f"{process.name} died"
