"""Platform load: a realistic mix through the gateway, next to a bare grpc.aio echo server.

The whole platform runs as real processes, started by the launcher (`make run`'s code:
nats-server, mail sink, identity, records, consent, notify, history_feed, gateway with the dev
PKI) on SQLite files, or PostgreSQL databases with `--backend postgresql`. This process is
the client (uvloop), with `--callers` concurrent callers for `--seconds` (and at most
`--max-calls` calls), each picking its next call from the mix:

    pro_get_document    45  a doctor reads a document (card, mTLS port)
    pro_list_documents  10  a doctor lists a record's documents
    upload              15  a doctor uploads a ~1 kB report
    access_history      15  a patient reads their access log (bearer token, patient port)
    history_ingest       5  the AMO feeder streams one batch of 50 claim lines
    patient_login      0.5  a patient starts a login (password: one argon2id verify, ~0.4 s
                            of CPU, plus a one-time code sent by e-mail)

The baseline, measured in the same run with the same callers: a bare grpc.aio server in its
own process answering a 200-byte unary echo (plaintext, no interceptor). The efficiency ratio
is platform QPS / echo QPS: how much of what gRPC alone does on this machine the platform
keeps while doing authentication, authorization, encryption, storage and events.

Logins are capped by design (argon2id at the configured cost), so 0.5 % of them alone bound the
mix: the same mix is also run without them (`efficiency_ratio_no_login`), and logins get a
phase of their own, reported as a ratio to raw argon2id verifications measured in this process
with the same parameters, one thread per core (`login_ratio_argon2`); identity runs at that
production cost here, not at the test stack's cheapest.

    .venv/bin/python bench/platform_load.py [--backend sqlite|postgresql] [--seconds 20]
        [--replicas 1,2]

`--replicas 1,2` runs the mix on one replica of everything, then on two replicas of every
service and of the gateway (the client balancing over the gateways, the gateways over the
services, round_robin), and writes both under `replica_runs` in
bench/results/platform_load_replicas.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import uvloop

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.demo.requests import desk_creation
from dmp_dev.launcher.nats_server import free_port, wait_for_port
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack
from kit import ins as kit_ins
from services.history_feed.synthetic import Generator
from services.identity.passwords import Argon2Params, PasswordService
from services.identity.settings import IdentitySettings

RESULTS = Path(__file__).parent / "results" / "platform_load.json"
R = records_pb2
C = consent_pb2
ID = identity_pb2
REPORT = ("Compte rendu de consultation. " * 40).encode()  # ~1.2 kB
PASSWORD = "Bench-Horse-42-battery"
MIX: dict[str, float] = {
    "pro_get_document": 45,
    "pro_list_documents": 10,
    "upload": 15,
    "access_history": 15,
    "history_ingest": 5,
    "patient_login": 0.5,
}
MIX_NO_LOGIN = {kind: weight for kind, weight in MIX.items() if kind != "patient_login"}
INGEST_LINES = 50
#: identity's configured (production) argon2id cost.
ARGON2 = {
    name: int(IdentitySettings.model_fields[name].default)
    for name in ("argon2_time_cost", "argon2_memory_cost", "argon2_parallelism")
}
PATIENTS = 12
LOGIN_ACCOUNTS = 6
ECHO_PAYLOAD = b"x" * 200


def make_ins(rng: random.Random) -> str:
    nir = f"1800575{rng.randrange(1_000_000):06d}"
    return kit_ins.with_key(nir)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def report(title: str = "Compte rendu de consultation") -> R.Document:
    document = R.Document(
        title=title, type_code="11488-4", content=REPORT, format=R.DOCUMENT_FORMAT_TEXT_PLAIN
    )
    document.service_start_time.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    return document


async def retry(call: Callable[[], Awaitable[object]], seconds: float = 30.0) -> object:
    """Until an event-driven projection caught up (consent learns records' changes by event)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- set-up


@dataclass
class Patient:
    ins: str
    dossier: str
    token: str
    documents: list[str] = field(default_factory=list)


@dataclass
class World:
    """Stubs and data the callers share."""

    doctor: records_pb2_grpc.RecordsServiceStub
    patient_consent: consent_pb2_grpc.ConsentServiceStub
    identity: identity_pb2_grpc.IdentityServiceStub
    amo: history_pb2_grpc.HistoryFeedServiceStub
    patients: list[Patient]
    accounts: list[str]
    generator: Generator
    ingested: int = 0


async def build_world(stack: LiveStack, rng: random.Random) -> World:
    desk = records_pb2_grpc.RecordsServiceStub(stack.card_channel("desk"))
    doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor"))
    patient_channel = stack.patient_channel()
    patient_records = records_pb2_grpc.RecordsServiceStub(patient_channel)
    patient_consent = consent_pb2_grpc.ConsentServiceStub(patient_channel)
    patients = []
    for _ in range(PATIENTS):
        ins = make_ins(rng)
        created = await desk.CreateDossier(
            desk_creation(ins, family_name="BENCH", given_name="Alice"),
            timeout=15,
        )
        token = stack.token(ins)
        await retry(
            lambda n=created.name, t=token: patient_records.GetDossier(  # type: ignore[misc]
                R.GetDossierRequest(name=n), metadata=bearer(t), timeout=10
            )
        )
        await patient_consent.GrantAccess(
            C.GrantAccessRequest(
                parent=created.name,
                professional_rpps=pki.DEMO_CARDS["doctor"].rpps,
                request_id=str(uuid.uuid4()),
            ),
            metadata=bearer(token),
            timeout=10,
        )
        patient = Patient(ins, created.name, token)
        for _ in range(3):
            document = await doctor.CreateDocument(
                R.CreateDocumentRequest(
                    parent=created.name, document=report(), request_id=str(uuid.uuid4())
                ),
                timeout=15,
            )
            patient.documents.append(document.name)
        patients.append(patient)

    desk_identity = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    anonymous = identity_pb2_grpc.IdentityServiceStub(patient_channel)
    accounts = []
    for index in range(LOGIN_ACCOUNTS):
        ins = make_ins(rng)
        issued = await desk_identity.IssueCreationCode(
            ID.IssueCreationCodeRequest(request_id=str(uuid.uuid4()), ins=ins), timeout=10
        )
        await anonymous.RegisterPatientAccount(
            ID.RegisterPatientAccountRequest(
                request_id=str(uuid.uuid4()),
                ins=ins,
                creation_code=issued.creation_code,
                password=PASSWORD,
                email=f"bench{index}@example.test",
            ),
            timeout=15,
        )
        accounts.append(ins)
    return World(
        doctor=doctor,
        patient_consent=patient_consent,
        identity=anonymous,
        amo=history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo")),
        patients=patients,
        accounts=accounts,
        generator=Generator(seed=7, patients=200, prefix=f"B{uuid.uuid4().hex[:6]}-"),
    )


# --------------------------------------------------------------------------- the calls


async def pro_get_document(world: World, rng: random.Random) -> None:
    patient = rng.choice(world.patients)
    await world.doctor.GetDocument(
        R.GetDocumentRequest(name=rng.choice(patient.documents)), timeout=30
    )


async def pro_list_documents(world: World, rng: random.Random) -> None:
    patient = rng.choice(world.patients)
    await world.doctor.ListDocuments(
        R.ListDocumentsRequest(parent=patient.dossier, page_size=20), timeout=30
    )


async def upload(world: World, rng: random.Random) -> None:
    patient = rng.choice(world.patients)
    await world.doctor.CreateDocument(
        R.CreateDocumentRequest(
            parent=patient.dossier, document=report(), request_id=str(uuid.uuid4())
        ),
        timeout=30,
    )


async def access_history(world: World, rng: random.Random) -> None:
    patient = rng.choice(world.patients)
    await world.patient_consent.ListAccessHistory(
        C.ListAccessHistoryRequest(parent=patient.dossier, page_size=20),
        metadata=bearer(patient.token),
        timeout=30,
    )


async def history_ingest(world: World, rng: random.Random) -> None:
    start = world.ingested
    world.ingested += INGEST_LINES
    batch = history_pb2.IngestClaimsRequest(
        lines=list(world.generator.lines(INGEST_LINES, start)), request_id=str(uuid.uuid4())
    )

    async def stream() -> AsyncIterator[history_pb2.IngestClaimsRequest]:
        yield batch

    await world.amo.IngestClaims(stream(), timeout=60)


async def patient_login(world: World, rng: random.Random) -> None:
    await world.identity.StartLogin(
        ID.StartLoginRequest(
            request_id=str(uuid.uuid4()), identifier=rng.choice(world.accounts), password=PASSWORD
        ),
        timeout=30,
    )


CALLS: dict[str, Callable[[World, random.Random], Awaitable[None]]] = {
    "pro_get_document": pro_get_document,
    "pro_list_documents": pro_list_documents,
    "upload": upload,
    "access_history": access_history,
    "history_ingest": history_ingest,
    "patient_login": patient_login,
}


# --------------------------------------------------------------------------- load


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def run_mix(
    world: World,
    callers: int,
    seconds: float,
    max_calls: int,
    seed: int,
    mix: dict[str, float] = MIX,
) -> Samples:
    samples = Samples({k: [] for k in mix}, {k: {} for k in mix})
    kinds, weights = list(mix), list(mix.values())
    remaining = max_calls
    deadline = time.monotonic() + seconds

    async def caller(index: int) -> None:
        nonlocal remaining
        rng = random.Random(seed * 1000 + index)
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                await CALLS[kind](world, rng)
            except grpc.aio.AioRpcError as exc:
                errors = samples.errors[kind]
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            samples.latencies[kind].append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    samples.seconds = time.monotonic() - started
    return samples


ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import grpc, uvloop

    class Echo(grpc.GenericRpcHandler):
        def service(self, details):
            return grpc.unary_unary_rpc_method_handler(echo_async)

    async def echo_async(request, context):
        return request

    async def main(port):
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((Echo(),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main(int(sys.argv[1])))
    """
)


def start_echo(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.DEVNULL
    )
    wait_for_port(port, proc=proc)
    return proc


async def run_echo(callers: int, seconds: float, max_calls: int) -> Samples:
    """The same callers against a bare grpc.aio server in its own process."""
    port = free_port()
    proc = await asyncio.to_thread(start_echo, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary("/bench.Echo/Echo")
            for _ in range(200):  # warm-up
                await echo(ECHO_PAYLOAD, timeout=10)
            samples = Samples({"echo": []}, {"echo": {}})
            remaining = max_calls
            deadline = time.monotonic() + seconds

            async def caller() -> None:
                nonlocal remaining
                while remaining > 0 and time.monotonic() < deadline:
                    remaining -= 1
                    started = time.perf_counter()
                    await echo(ECHO_PAYLOAD, timeout=10)
                    samples.latencies["echo"].append(time.perf_counter() - started)

            started = time.monotonic()
            await asyncio.gather(*(caller() for _ in range(callers)))
            samples.seconds = time.monotonic() - started
            return samples
    finally:
        proc.terminate()
        proc.wait(10)


def argon2_verifications_per_s(threads: int, seconds: float) -> float:
    """Raw argon2id verifications per second with identity's configured parameters, on
    `threads` threads (argon2 releases the GIL), in this process."""
    params = Argon2Params(
        time_cost=ARGON2["argon2_time_cost"],
        memory_cost=ARGON2["argon2_memory_cost"],
        parallelism=ARGON2["argon2_parallelism"],
    )
    service = PasswordService(params)
    stored = service._hasher.hash(PASSWORD)
    done = 0
    deadline = time.monotonic() + seconds

    def verify() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            assert service.verify_sync(stored, PASSWORD)
            done += 1

    started = time.monotonic()
    workers = [threading.Thread(target=verify) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done / (time.monotonic() - started)


# --------------------------------------------------------------------------- main


def replica_env(replicas: int) -> dict[str, dict[str, str]]:
    """With N replicas each process gets 1/N of the PostgreSQL overflow a one-replica run
    has (tests' 2 + 8), so the platform holds about as many connections either way."""
    env: dict[str, dict[str, str]] = {
        "gateway": {"DMP_RATE_LIMIT_PER_S": "1000000", "DMP_RATE_LIMIT_BURST": "1000000"},
        # Logins at production's argon2id cost (the test stack's default is the cheapest), the
        # cost the raw verifications below are measured with.
        "identity": {f"DMP_{name.upper()}": str(value) for name, value in ARGON2.items()},
    }
    if replicas > 1:
        for name in ("identity", "records", "consent", "notify", "history_feed"):
            overflow = {"DMP_DATABASE_MAX_OVERFLOW": str(max(2, 8 // replicas))}
            env[name] = {**env.get(name, {}), **overflow}
    return env


async def main(args: argparse.Namespace) -> dict[str, object]:
    """One run per `--replicas` value (e.g. "1,2": the same mix on 1 then 2 replicas of
    every service and of the gateway); the first run's figures stay at the top level."""
    runs = [await measure(args, int(n)) for n in str(args.replicas).split(",")]
    result = dict(runs[0])
    if len(runs) > 1:
        result["replica_runs"] = {str(run["replicas"]): run for run in runs}
    return result


async def measure(args: argparse.Namespace, replicas: int) -> dict[str, object]:
    # Log warnings only: the figures measure the platform, not the log volume of a dev run.
    os.environ["DMP_LOG_LEVEL"] = "WARNING"
    if replicas > 1 and args.backend != "postgresql":
        raise SystemExit("--replicas above 1 needs --backend postgresql (one SQLite file each)")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dmp-platform-load-") as tmp:
        (Path(tmp) / "db").mkdir()
        databases = DatabaseFactory(args.backend, Path(tmp) / "db")
        try:
            async with running_stack(
                databases, Path(tmp) / "var", extra_env=replica_env(replicas), replicas=replicas
            ) as stack:
                world = await build_world(stack, rng)
                # Warm-up: every call kind once, connections and caches in place.
                await run_mix(world, 4, 3.0, 200, args.seed + 1)
                platform = await run_mix(
                    world, args.callers, args.seconds, args.max_calls, args.seed
                )
                no_login = await run_mix(
                    world, args.callers, args.seconds, args.max_calls, args.seed, MIX_NO_LOGIN
                )
                # One login caller per core: more would only queue behind argon2 past the
                # calls' deadline (capacity, not latency, is measured here).
                logins = await run_mix(
                    world, os.cpu_count() or 1, 8.0, 200, args.seed, {"patient_login": 1.0}
                )
        finally:
            await databases.drop_all()
    echo = await run_echo(args.callers, min(args.seconds, 10.0), args.max_calls * 10)
    # As many threads as identity's default executor can run at once on this machine's cores.
    threads = min(args.callers, os.cpu_count() or 1)
    argon2_per_s = await asyncio.to_thread(argon2_verifications_per_s, threads, 6.0)
    no_login_qps = no_login.calls / no_login.seconds
    logins_per_s = logins.calls / logins.seconds

    platform_qps = platform.calls / platform.seconds
    echo_qps = echo.calls / echo.seconds
    kinds: dict[str, dict[str, float | int | dict[str, int]]] = {}
    for kind, latencies in platform.latencies.items():
        kinds[kind] = {
            "calls": len(latencies),
            "qps": round(len(latencies) / platform.seconds, 1),
            "p50_ms": round(pct(latencies, 0.50), 2),
            "p99_ms": round(pct(latencies, 0.99), 2),
            "errors": platform.errors[kind],
        }
    return {
        "backend": args.backend,
        "replicas": replicas,
        "callers": args.callers,
        "seconds": round(platform.seconds, 1),
        "mix_weights": MIX,
        "echo_qps": round(echo_qps, 1),
        "echo_p50_ms": round(pct(echo.latencies["echo"], 0.50), 3),
        "echo_p99_ms": round(pct(echo.latencies["echo"], 0.99), 3),
        "platform_qps": round(platform_qps, 1),
        "efficiency_ratio": round(platform_qps / echo_qps, 4),
        "errors": sum(sum(e.values()) for e in platform.errors.values()),
        "no_login_qps": round(no_login_qps, 1),
        "efficiency_ratio_no_login": round(no_login_qps / echo_qps, 4),
        "no_login_errors": sum(sum(e.values()) for e in no_login.errors.values()),
        "logins_per_s": round(logins_per_s, 2),
        "login_errors": sum(sum(e.values()) for e in logins.errors.values()),
        "login_error_codes": logins.errors["patient_login"],
        "argon2_verifications_per_s": round(argon2_per_s, 2),
        "login_ratio_argon2": round(logins_per_s / argon2_per_s, 3),
        **kinds,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--replicas",
        default="1",
        help="replicas of every service and of the gateway; a list (1,2) measures each in "
        "turn in the same run (PostgreSQL only above 1)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 s phases, figures printed, not written"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.max_calls = min(args.seconds, 4.0), min(args.max_calls, 500)
    result = uvloop.run(main(args))
    print(json.dumps(result, indent=2))
    print(
        f"platform {result['platform_qps']} QPS vs bare echo {result['echo_qps']} QPS: "
        f"efficiency ratio {result['efficiency_ratio']}, "
        f"without logins {result['efficiency_ratio_no_login']}; "
        f"logins at {result['login_ratio_argon2']} of raw argon2id"
    )
    # SQLite keeps the historical name; PostgreSQL, the headline, has its own file.
    target = (
        RESULTS if args.backend == "sqlite" else RESULTS.with_name("platform_load_postgresql.json")
    )
    if "replica_runs" in result:  # 1 vs 2 replicas: apart, not over the single-replica figures
        target = RESULTS.with_name("platform_load_replicas.json")
    if not args.quick:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    failed = result["errors"] or result["no_login_errors"] or result["login_errors"]
    if failed:
        raise SystemExit(f"errors during the load: {failed}")


if __name__ == "__main__":
    cli()
