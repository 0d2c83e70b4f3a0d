"""Replica faults as a benchmark: 2 replicas of every service, 2 gateways, a 3-node NATS
cluster on PostgreSQL; the second replica of each service, the second gateway and one NATS
node SIGKILLed under a mixed load and started again (tests/replicas/scenario.py, the same
scenario as tests/replicas/test_replica_faults.py).

Writes bench/results/replica_faults.json: `client_errors` (calls the caller saw fail, after
gRPC's retry policy), `events_lost`, `events_doubled` (document-added e-mails in the dev mail
sink against the acknowledged uploads), `claim_lines_lost` / `claim_lines_doubled` (the AMO
feeder's care lines against the patients' care histories), `logins` / `logins_failed` (patient
logins with the one-time code from the mail sink), `block_propagation_ms_max` (a patient's
block, issued while each component is down, until every running gateway replica refuses the
doctor) and
`first_ok_after_kill_s` per component. Exits 1 when any error, lost or doubled count is not
0, no claim line or login ran, or a block took more than 1 s.

    .venv/bin/python bench/replica_faults.py [--quick]

`--quick` kills records-2, gateway-2 and a NATS node only (and writes no results file).
Needs a local PostgreSQL (DMP_TEST_PG_DSN, as the tests); bounded: each outage lasts until a
few uploads are acknowledged after the kill (at most 20 s), about 2-4 minutes in all on a
busy 2-core machine, most of it starting 15 processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

# The scenario lives with its test (tests/replicas), one copy for both.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import running_stack
from tests.replicas.scenario import (
    BLOCK_WITHIN_S,
    NATS_NODES,
    REPLICAS,
    run_scenario,
    stack_env,
)

RESULTS = Path(__file__).parent / "results" / "replica_faults.json"


async def main(args: argparse.Namespace) -> dict[str, object]:
    os.environ.setdefault("DMP_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="dmp-replica-faults-") as tmp:
        databases = DatabaseFactory("postgresql", Path(tmp) / "db")
        try:
            async with running_stack(
                databases,
                Path(tmp) / "var",
                extra_env=stack_env(),
                replicas=REPLICAS,
                nats_nodes=NATS_NODES,
            ) as stack:
                outcome = await run_scenario(stack, quick=args.quick)
                died = [p.name for p in stack.dev.processes if p.exited() is not None]
        finally:
            await databases.drop_all()
    return {
        "replicas": REPLICAS,
        "nats_nodes": NATS_NODES,
        "quick": args.quick,
        **outcome.summary(),
        "processes_died": died,
    }


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three victims, no results file")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps(result, indent=2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    block_ms = result["block_propagation_ms_max"]
    failed = (
        result["client_errors"]
        or result["events_lost"]
        or result["events_doubled"]
        or result["claim_lines_lost"]
        or result["claim_lines_doubled"]
        or result["logins_failed"]
        or not result["claim_lines"]
        or not result["logins"]
        or result["block_failures"]
        or result["processes_died"]
        or not isinstance(block_ms, (int, float))
        or block_ms > BLOCK_WITHIN_S * 1000
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli())
