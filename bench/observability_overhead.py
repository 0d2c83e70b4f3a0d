"""Per-RPC cost of the observability hooks (server span + RED metrics + trace propagation).

1. The hook alone, in-process: `RpcObserver.start` + `finish` (what every
   service and the gateway add per call): first the default
   (DMP_TRACE_EXPORTER=none: id-only spans, nothing recorded), then recording
   through a BatchSpanProcessor in front of an exporter that drops spans (the
   OTLP path without the network). Plus the gateway's extra hooks: its own
   `traceparent` for the upstream call and one decision-cache counter.
   Baseline: an empty loop of the same length, measured in the same run.
2. End to end: unary calls on a loopback grpc.aio echo server, bare vs wrapped
   with `kit.observe.InstrumentedHandler` (as the gateway is), alternating
   rounds, in both modes; the ratio is instrumented/bare mean latency.

Goal: the per-RPC hook well under 0.1 ms. Bounded in count; loopback only.

    .venv/bin/python bench/observability_overhead.py [--count 20000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from kit import tracing
from kit.metrics import DECISION_CACHE_HIT
from kit.observe import InstrumentedHandler, RpcObserver

RESULTS = Path(__file__).parent / "results" / "observability_overhead.json"
PATH = "/dmp.records.v1.RecordsService/GetDocument"
METADATA = (
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("user-agent", "grpc-python"),
)


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _per_call_us(count: int, body: Any) -> tuple[float, float]:
    """(min, median) µs per call over blocks of 200: the min is the cost without preemption
    (the machine is shared), the median what a loaded process sees."""
    block = 200
    timings = []
    for _ in range(max(1, count // block)):
        started = time.perf_counter()
        body(block)
        timings.append((time.perf_counter() - started) / block * 1e6)
    return min(timings), statistics.median(timings)


def _empty(count: int) -> None:
    for _ in range(count):
        pass


def _hook(observer: RpcObserver) -> Any:
    ok = grpc.StatusCode.OK

    def run(count: int) -> None:
        for _ in range(count):
            observer.finish(observer.start(PATH, METADATA), ok)

    return run


def _gateway_hook(observer: RpcObserver) -> Any:
    ok = grpc.StatusCode.OK

    def run(count: int) -> None:
        for _ in range(count):
            rpc = observer.start(PATH, METADATA)
            tracing.traceparent()
            DECISION_CACHE_HIT.inc()
            observer.finish(rpc, ok)

    return run


class _Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


async def _server(instrumented: bool) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handler: grpc.GenericRpcHandler = _Echo()
    if instrumented:
        handler = InstrumentedHandler(handler, RpcObserver("bench"))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _round(port: int, calls: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(PATH)
        await call(b"warm", metadata=METADATA)
        started = time.perf_counter()
        for _ in range(calls):
            await call(b"x" * 64, metadata=METADATA)
        return (time.perf_counter() - started) / calls * 1e6


async def _end_to_end(calls: int, rounds: int) -> dict[str, float]:
    bare_server, bare_port = await _server(False)
    inst_server, inst_port = await _server(True)
    bare: list[float] = []
    inst: list[float] = []
    try:
        for _ in range(rounds):
            bare.append(await _round(bare_port, calls))
            inst.append(await _round(inst_port, calls))
    finally:
        await bare_server.stop(0)
        await inst_server.stop(0)
    bare_us, inst_us = statistics.median(bare), statistics.median(inst)
    return {
        "bare_call_us": round(bare_us, 1),
        "instrumented_call_us": round(inst_us, 1),
        "added_us": round(inst_us - bare_us, 1),
        "ratio": round(inst_us / bare_us, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    # Production default (DMP_TRACE_EXPORTER=none): id-only server spans, nothing recorded.
    observer = RpcObserver("bench")
    base_min, base_med = _per_call_us(args.count, _empty)
    hook = _per_call_us(args.count, _hook(observer))
    gateway = _per_call_us(args.count, _gateway_hook(observer))
    e2e = asyncio.run(_end_to_end(args.calls, args.rounds))
    # With an exporter: recorded spans through a BatchSpanProcessor (OTLP without the network).
    provider = tracing.add_span_processor(
        BatchSpanProcessor(_Drop(), max_queue_size=args.count * 2), "bench"
    )
    hook_batch = _per_call_us(args.count, _hook(observer))
    gateway_batch = _per_call_us(args.count, _gateway_hook(observer))
    e2e_batch = asyncio.run(_end_to_end(args.calls, args.rounds))
    provider.shutdown()

    def figures(measured: tuple[float, float]) -> dict[str, float]:
        return {
            "min_us": round(measured[0] - base_min, 2),
            "median_us": round(measured[1] - base_med, 2),
        }

    worst = max(hook[1], gateway[1]) - base_med
    result = {
        "empty_loop_us": round(base_med, 3),
        "hook_no_exporter": figures(hook),
        "gateway_hooks_no_exporter": figures(gateway),
        "hook_recording_batch_processor": figures(hook_batch),
        "gateway_hooks_recording_batch_processor": figures(gateway_batch),
        "hook_goal_us": 100.0,
        "no_exporter_worst_median_share_of_goal": round(worst / 100.0, 3),
        "echo_no_exporter": e2e,
        "echo_recording": e2e_batch,
        "count": args.count,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
