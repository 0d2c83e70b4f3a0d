"""Authorize: decisions per second and p99, in-process and over gRPC (loopback).

In-process measures what consent does per decision with the record's state
cached (cache lookups + the pure decision function), then the same plus the
audit write. Over gRPC measures the full Authorize RPC as the gateway calls it
(signed internal principal, interceptors, decision, access-log append).
Bounded in count and time; loopback only; SQLite file by default
(`--database-url` for PostgreSQL).

    .venv/bin/python bench/authorize.py [--count 3000] [--seconds 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from dmp.authz.v1 import authz_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from kit import migrations
from kit.db import utcnow
from kit.server import start_app
from services.consent import authorizing
from services.consent.app import ConsentApp
from services.consent.decision import Request, Resource, decide
from services.consent.models import access_rules, record_states
from services.consent.settings import ConsentSettings

RESULTS = Path(__file__).parent / "results" / "authorize.json"
METHOD = "/dmp.consent.v1.ConsentService/Authorize"
DOSSIERS = [f"dossiers/bench{i}" for i in range(50)]
DOCTOR = principals.professional("81000000001", "10", "SM26")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def seed(app: ConsentApp) -> None:
    now = utcnow()
    async with app.db.begin() as session:
        for i, dossier in enumerate(DOSSIERS):
            await session.execute(
                record_states.insert().values(
                    dossier=dossier,
                    patient_ins=f"1850575{i:06d}00",
                    state=records_pb2.DOSSIER_STATE_ACTIVE,
                    minor=False,
                    update_time=now,
                )
            )
            await session.execute(
                access_rules.insert().values(
                    rule_id=f"g{i}",
                    dossier=dossier,
                    kind=consent_pb2.ACCESS_RULE_KIND_GRANT,
                    state=consent_pb2.ACCESS_RULE_STATE_ACTIVE,
                    professional_rpps=DOCTOR.rpps,
                    display_name="",
                    profession_code="10",
                    details=b"",
                    creator="bench",
                    create_time=now,
                    update_time=now,
                    revoker="",
                )
            )


def request(i: int) -> consent_pb2.AuthorizeRequest:
    return consent_pb2.AuthorizeRequest(
        principal=DOCTOR,
        action=authz_pb2.ACTION_READ,
        resource_kind=authz_pb2.RESOURCE_KIND_DOCUMENT,
        dossier=DOSSIERS[i % len(DOSSIERS)],
        method="/dmp.records.v1.RecordsService/GetDocument",
        resource=consent_pb2.ResourceAttributes(document_class_code="10"),
    )


async def in_process(app: ConsentApp, count: int, seconds: float) -> list[float]:
    """Cache lookups + decision, as the servicer does before the audit write."""
    cache, matrix = app.cache, app.matrix
    for dossier in DOSSIERS:  # warm the caches
        await cache.record(dossier)
        await cache.rules(dossier, utcnow())
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    for i in range(count):
        if time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        now = utcnow()
        record = await cache.record(DOSSIERS[i % len(DOSSIERS)])
        assert record is not None
        rules = await cache.rules(record.dossier, now)
        decision = decide(
            matrix,
            Request(
                DOCTOR,
                authz_pb2.ACTION_READ,
                authz_pb2.RESOURCE_KIND_DOCUMENT,
                "/dmp.records.v1.RecordsService/GetDocument",
                Resource(class_code="10"),
            ),
            record,
            rules,
            now,
        )
        samples.append(time.perf_counter() - start)
        assert decision.allowed
    return samples


async def in_process_audited(app: ConsentApp, count: int, seconds: float) -> list[float]:
    runtime = app.runtime
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    for i in range(count):
        if time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        response = await authorizing.authorize(runtime, request(i))
        samples.append(time.perf_counter() - start)
        assert response.decision == consent_pb2.DECISION_ALLOWED
    return samples


async def over_grpc(
    target: str, count: int, seconds: float, concurrency: int
) -> tuple[list[float], float]:
    channel = grpc.aio.insecure_channel(target)
    stub = consent_pb2_grpc.ConsentServiceStub(channel)
    samples: list[float] = []
    counter = iter(range(count))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            metadata = principals.metadata(principals.internal(), METHOD)
            start = time.perf_counter()
            response = await stub.Authorize(request(i), metadata=metadata, timeout=10)
            samples.append(time.perf_counter() - start)
            assert response.decision == consent_pb2.DECISION_ALLOWED

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await channel.close()
    return samples, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="dmp-bench-")
    url = args.database_url or f"sqlite+aiosqlite:///{tmp}/consent.db"
    settings = ConsentSettings(database_url=url, log_level="WARNING", log_json=False)
    await migrations.upgrade("consent", url)  # services never migrate at start
    app = ConsentApp(settings)
    app.needs_nats = lambda: False  # type: ignore[method-assign]
    running = await start_app(app)
    try:
        await seed(app)
        pure = await in_process(app, args.count * 10, args.seconds)
        audited = await in_process_audited(app, args.count, args.seconds)
        rpc, elapsed = await over_grpc(running.target, args.count, args.seconds, args.concurrency)
    finally:
        await running.stop(0)
    result = {
        "database": url.split(":", 1)[0],
        "in_process_decisions": len(pure),
        "in_process_p50_ms": round(pct(pure, 0.50), 4),
        "in_process_p99_ms": round(pct(pure, 0.99), 4),
        "in_process_decisions_per_s": round(len(pure) / sum(pure), 1),
        "in_process_audited_p99_ms": round(pct(audited, 0.99), 3),
        "in_process_audited_decisions_per_s": round(len(audited) / sum(audited), 1),
        "grpc_calls": len(rpc),
        "grpc_concurrency": args.concurrency,
        "grpc_p50_ms": round(pct(rpc, 0.50), 3),
        "grpc_p99_ms": round(pct(rpc, 0.99), 3),
        "grpc_mean_ms": round(statistics.fmean(rpc) * 1000, 3),
        "grpc_decisions_per_s": round(len(rpc) / elapsed, 1),
    }
    result["grpc_over_in_process_p99"] = round(
        result["grpc_p99_ms"] / max(result["in_process_p99_ms"], 1e-6), 1
    )
    result["in_process_over_grpc_throughput"] = round(
        result["in_process_decisions_per_s"] / max(result["grpc_decisions_per_s"], 1e-6), 1
    )
    for key, value in result.items():
        print(f"{key:36} {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
