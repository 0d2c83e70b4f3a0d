"""JSON door vs gRPC edge: the same patient GetDocument through both doors of one gateway.

The platform is started by the launcher (`running_stack`, the code behind `make run`) on
SQLite files in a temporary directory, rate limits lifted. A desk creates a record, the
demo doctor uploads a document (gRPC, card), and the patient (a token signed with the
stack's identity key) reads it:

- grpc: one TLS channel to the patient port (HTTP/2, `GetDocument` with the bearer token);
- json: `GET /v1/{name}?view=DOCUMENT_VIEW_FULL` over a keep-alive HTTPS client
  (aiohttp, one connection per caller), the same bearer token, JSON parsed.

Each side runs `--callers` concurrent callers (8) in alternating slices (the drifting load
of a shared machine hits both alike), at most `--seconds` per side in all (60), and
`--max-calls` per slice. Every answer is checked (the document's name); any error fails
the run. Ratios are json / grpc measured in the same run: `p50_ratio` (goal <= 1.3),
`p99_ratio`, `qps_ratio`.

    .venv/bin/python bench/json_door.py [--quick] [--callers 8] [--seconds 60] [--slices 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import uvloop

from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing.stack import LiveStack, running_stack

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "json_door.json"
sys.path.insert(0, str(ROOT))
from tests.fixtures.records import make_ins  # noqa: E402
from tests.records.helpers import create_request, doc  # noqa: E402

ENV = {
    "gateway": {
        "DMP_RATE_LIMIT_PER_S": "1000000",
        "DMP_RATE_LIMIT_BURST": "1000000",
        "DMP_ANONYMOUS_RATE_LIMIT_PER_S": "1000000",
        "DMP_ANONYMOUS_RATE_LIMIT_BURST": "1000000",
    },
    "identity": {"DMP_ARGON2_TIME_COST": "1", "DMP_ARGON2_MEMORY_COST": "1024"},
}


@dataclass
class Side:
    name: str
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        return {
            "calls": len(ordered),
            "errors": self.errors,
            "p50_ms": round(statistics.median(ordered) * 1000, 3) if ordered else 0.0,
            "p99_ms": round(p99 * 1000, 3),
            "qps": round(len(ordered) / self.seconds, 1) if self.seconds else 0.0,
        }


async def _document(stack: LiveStack) -> tuple[str, str]:
    """A record with one document; (document name, the patient's INS)."""
    ins = make_ins(900_000 + os.getpid() % 90_000)
    desk = records_pb2_grpc.RecordsServiceStub(stack.card_channel("desk"))
    dossier = (await desk.CreateDossier(create_request(ins), timeout=15)).name
    doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor"))
    deadline = time.monotonic() + 30
    while True:
        try:
            created = await doctor.CreateDocument(
                records_pb2.CreateDocumentRequest(
                    parent=dossier, document=doc(title="Bilan"), request_id=os.urandom(16).hex()
                ),
                timeout=10,
            )
            return created.name, ins
        except grpc.aio.AioRpcError as exc:  # consent learns the new record from its events
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _slice(callers: int, max_calls: int, seconds: float, call: object, side: Side) -> None:
    stop = time.perf_counter() + seconds
    remaining = [max_calls]

    async def caller() -> None:
        while remaining[0] > 0 and time.perf_counter() < stop:
            remaining[0] -= 1
            started = time.perf_counter()
            try:
                await call()  # type: ignore[operator]
            except Exception as exc:  # counted, and fails the run
                side.errors += 1
                if side.errors <= 3:
                    print(f"{side.name} error: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            side.latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    side.seconds += time.perf_counter() - began


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="dmp-json-door-") as tmp:
        async with running_stack(None, Path(tmp) / "var", extra_env=ENV) as stack:
            name, ins = await _document(stack)
            token = stack.token(ins)
            md = (("authorization", f"Bearer {token}"),)
            stub = records_pb2_grpc.RecordsServiceStub(stack.patient_channel())
            request = records_pb2.GetDocumentRequest(name=name, view=records_pb2.DOCUMENT_VIEW_FULL)
            context = ssl.create_default_context(cadata=stack.ca_pem.decode())
            connector = aiohttp.TCPConnector(ssl=context, limit=args.callers)
            headers = {"Authorization": f"Bearer {token}"}
            url = f"{stack.http_url}/v1/{name}?view=DOCUMENT_VIEW_FULL"
            grpc_side, json_side = Side("grpc"), Side("json")
            async with aiohttp.ClientSession(connector=connector) as http:

                async def by_grpc() -> None:
                    answer = await stub.GetDocument(request, metadata=md, timeout=10)
                    if answer.name != name:
                        raise AssertionError("wrong document")

                async def by_json() -> None:
                    async with http.get(url, headers=headers) as response:
                        body = await response.read()
                        if response.status != 200 or json.loads(body)["name"] != name:
                            raise AssertionError(f"HTTP {response.status}")

                for warm in (by_grpc, by_json):  # connections, caches
                    for _ in range(20):
                        await warm()
                per_slice = args.seconds / args.slices
                for index in range(args.slices):
                    order = [(by_grpc, grpc_side), (by_json, json_side)]
                    for call, side in order if index % 2 == 0 else reversed(order):
                        await _slice(args.callers, args.max_calls, per_slice, call, side)
    g, j = grpc_side.summary(), json_side.summary()
    return {
        "bench": "json_door",
        "what": "patient GetDocument (FULL, ~60 B content) through the JSON door vs the gRPC "
        "patient port of the same gateway, launcher-started stack on SQLite",
        "callers": args.callers,
        "seconds_per_side": args.seconds,
        "slices": args.slices,
        "quick": args.quick,
        "grpc": g,
        "json": j,
        "p50_ratio": round(j["p50_ms"] / g["p50_ms"], 3) if g["p50_ms"] else None,
        "p99_ratio": round(j["p99_ms"] / g["p99_ms"], 3) if g["p99_ms"] else None,
        "qps_ratio": round(j["qps"] / g["qps"], 3) if g["qps"] else None,
        "goal_p50_ratio": 1.3,
        "load": os.getloadavg()[0],
        "errors": grpc_side.errors + json_side.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 slices of 1.5 s")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="per side, at most 60")
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--max-calls", type=int, default=20_000, help="per side and slice")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    if args.quick:
        args.seconds, args.slices = 3.0, 2
    result = uvloop.run(run(args))
    print(json.dumps(result, indent=2))
    if result["errors"]:
        raise SystemExit(f"{result['errors']} calls failed")
    if not args.quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
