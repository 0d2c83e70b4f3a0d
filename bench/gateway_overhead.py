"""Gateway overhead: the same GetDocument direct to records and through the gateway.

identity, records, consent and the gateway run as real processes started by
the launcher (`DevStack`, the code behind `make run`: nats-server, dev PKI,
cards registered) on SQLite files or PostgreSQL databases (`--backend`). The
launcher's gateway caches decisions (`DMP_DECISION_CACHE_TTL_S=5`, the
default); a second gateway process, same configuration, runs with the cache
off (TTL 0: every call asks consent.Authorize, which also appends to the
access log). The client is this process (its own event loop, uvloop in every
case):

- direct: plaintext to records with the signed principal + scope the gateway
  would send (built by the gateway's own `Decisions` from a real Authorize);
- cached / uncached: mTLS to a gateway with the doctor's registered card.

Each case runs with 1 and 32 concurrent callers, bounded in count and time,
in `--slices` short slices alternating between the cases (so the drifting load
of a shared machine hits every case alike); latencies are pooled per case and
the ratios are gateway / direct measured in the same run. The rate limit of
the bench gateways is lifted (one card drives all the load). Headline keys
(`p50_ratio_cached`, ...) are for 1 caller; the `_c32` keys for 32 callers.

    .venv/bin/python bench/gateway_overhead.py [--backend sqlite|postgresql] [--slices 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import grpc
import psutil
import uvloop
from cryptography import x509

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_cli import catalog
from dmp_dev import pki
from dmp_dev.demo.requests import desk_creation
from dmp_dev.launcher.processes import ServiceProcess, stop_all, wait_until_serving
from dmp_dev.launcher.stack import DevStack, StackConfig, gateway_env
from gateway.authn import Caller
from gateway.authz import Decisions
from gateway.routing import build_routes
from kit import ins as kit_ins
from kit import principal as principals
from kit.clients import InternalCredentials
from kit.tokens import AccessTokenIssuer, load_private_key

RESULTS = Path(__file__).parent / "results" / "gateway_overhead.json"
GET_DOCUMENT = "/dmp.records.v1.RecordsService/GetDocument"
SERVICES = ("identity", "records", "consent")
PG_ADMIN_DSN = os.environ.get("DMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
R = records_pb2
T = TypeVar("T")
REPORT = ("Compte rendu de consultation. " * 40).encode()  # ~1.2 kB of content


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_base(span: int = 5) -> int:
    """A base port with `span` free ports after it (the launcher's fixed offsets)."""
    for _ in range(200):
        base = free_port()
        if base + span < 65535 and all(_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def make_ins() -> str:
    """A valid INS (NIR + key), fresh per run."""
    nir = f"1800575{uuid.uuid4().int % 1_000_000:06d}"
    return kit_ins.with_key(nir)


# --------------------------------------------------------------------------- platform

#: Bench gateways: one card drives all the load, so the per-principal rate limit is lifted.
BENCH_GATEWAY_ENV = {
    "DMP_RATE_LIMIT_PER_S": "1000000",
    "DMP_RATE_LIMIT_BURST": "1000000",
    "DMP_LOG_LEVEL": "WARNING",
}


@dataclass
class Gateways:
    cached: int
    uncached: int
    patient: int
    process: ServiceProcess


def start_uncached_gateway(stack: DevStack) -> tuple[int, ServiceProcess]:
    """A second gateway like the launcher's, with the decision cache off (TTL 0)."""
    assert stack.secrets is not None
    port, probe = free_port(), free_port()
    env = gateway_env(stack.cfg, stack.secrets)
    env.update(
        {
            "DMP_GRPC_PORT": str(port),
            "DMP_PATIENT_PORT": str(free_port()),
            "DMP_PROBE_PORT": str(probe),
            "DMP_METRICS_PORT": "0",
            "DMP_DECISION_CACHE_TTL_S": "0",
        }
    )
    process = ServiceProcess(
        name="gateway-uncached",
        module="gateway",
        target=f"127.0.0.1:{probe}",
        log_file=stack.cfg.logs / "gateway-uncached.log",
        env=env,
    )
    process.start()
    try:
        wait_until_serving([process], 60)
    except BaseException:
        stop_all([process], 10)
        raise
    return port, process


def profile_gateway(stack: DevStack, output: Path) -> None:
    """Replace the launcher's gateway by the same one under cProfile (written on SIGTERM)."""
    gateway = stack.process("gateway")
    stack.stop_one("gateway")
    profiled = _ProfiledProcess(
        name="gateway",
        module="gateway",
        target=gateway.target,
        log_file=gateway.log_file,
        env=gateway.env,
        output=output,
    )
    profiled.start()
    wait_until_serving([profiled], 60)
    stack.processes[stack.processes.index(gateway)] = profiled


@dataclass
class _ProfiledProcess(ServiceProcess):
    output: Path = Path("gateway.prof")

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        command = [sys.executable, "-m", "cProfile", "-o", str(self.output), "-m", self.module]
        self.proc = subprocess.Popen(
            command,
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def create_pg_databases(run_id: str) -> dict[str, str]:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    urls = {}
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        for name in SERVICES:
            db = f"dmp_bench_gw_{run_id}_{name}"
            await conn.execute(f'CREATE DATABASE "{db}"')
            urls[name] = f"{base}/{db}"
    finally:
        await conn.close()
    return urls


async def drop_pg_databases(urls: dict[str, str]) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for url in urls.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


# --------------------------------------------------------------------------- data set-up


@dataclass
class Fixture:
    document: str
    doctor: principal_pb2.Principal


class Setup:
    """Register the doctor's card, create a record at the desk, upload, grant: all for real."""

    def __init__(self, stack: DevStack, gateways: Gateways) -> None:
        assert stack.secrets is not None
        self.stack = stack
        self.secrets = stack.secrets
        self.pki_dir = stack.cfg.var_dir / "pki"
        self.gateways = gateways
        self.ca = (self.pki_dir / "ca.crt").read_bytes()
        self.channels: list[grpc.aio.Channel] = []

    def target(self, service: str) -> str:
        return self.stack.cfg.target(catalog.spec(service))

    def card_channel(self, stem: str, port: int) -> grpc.aio.Channel:
        cards = self.pki_dir / "cards"
        creds = grpc.ssl_channel_credentials(
            self.ca,
            private_key=(cards / f"{stem}.key").read_bytes(),
            certificate_chain=(cards / f"{stem}.crt").read_bytes(),
        )
        channel = grpc.aio.secure_channel(f"localhost:{port}", creds)
        self.channels.append(channel)
        return channel

    def doctor(self) -> principal_pb2.Principal:
        """What the gateway's Authenticator builds from ResolveCertificate for the doctor card
        (the launcher registered it from the card's subject fields)."""
        cert = x509.load_pem_x509_certificate((self.pki_dir / "cards" / "doctor.crt").read_bytes())
        fields = pki.card_fields(cert)
        return principal_pb2.Principal(
            kind=principal_pb2.PRINCIPAL_KIND_PROFESSIONAL,
            subject=fields.rpps,
            rpps=fields.rpps,
            profession_code=fields.profession_code,
            specialty_code=fields.specialty_code,
        )

    async def run(self) -> Fixture:
        doctor = self.doctor()
        port = self.gateways.cached
        desk = records_pb2_grpc.RecordsServiceStub(self.card_channel("desk", port))
        ins = make_ins()
        request = desk_creation(ins, family_name="BENCH", given_name="Alice")
        dossier = await desk.CreateDossier(request, timeout=15)
        doc = R.Document(
            title="Compte rendu de consultation",
            type_code="11488-4",
            content=REPORT,
            format=R.DOCUMENT_FORMAT_TEXT_PLAIN,
        )
        doc.service_start_time.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        doctor_stub = records_pb2_grpc.RecordsServiceStub(self.card_channel("doctor", port))
        created = await _retry(
            lambda: doctor_stub.CreateDocument(
                R.CreateDocumentRequest(
                    parent=dossier.name, document=doc, request_id=str(uuid.uuid4())
                ),
                timeout=15,
            )
        )
        issuer = AccessTokenIssuer(load_private_key(self.secrets.token_signing_key_file))
        token = issuer.issue(account=f"acct-{ins}", ins=ins, session_id=uuid.uuid4().hex).token
        patient = consent_pb2_grpc.ConsentServiceStub(self._tls_channel(self.gateways.patient))
        await patient.GrantAccess(
            consent_pb2.GrantAccessRequest(
                parent=dossier.name, professional_rpps=doctor.rpps, request_id=str(uuid.uuid4())
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
        return Fixture(created.name, doctor)

    def _tls_channel(self, port: int) -> grpc.aio.Channel:
        channel = grpc.aio.secure_channel(
            f"localhost:{port}", grpc.ssl_channel_credentials(self.ca)
        )
        self.channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def _retry(call: Callable[[], Awaitable[T]], seconds: float = 20.0) -> T:
    """The first write races consent's projection of the new record (an event away)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            retriable = exc.code() in (
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.PERMISSION_DENIED,
            )
            if not retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- load


@dataclass
class Pool:
    """Latencies and busy time of one case, pooled over its slices."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: CPU seconds the gateway process spent during the case (0 for direct).
    gateway_cpu: float = 0.0

    def figures(self) -> dict[str, float]:
        calls = max(1, len(self.latencies))
        return {
            "gateway_cpu_ms_per_call": round(self.gateway_cpu * 1000 / calls, 3),
            "calls": len(self.latencies),
            "seconds": round(self.seconds, 3),
            "qps": round(len(self.latencies) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(pct(self.latencies, 0.50), 3),
            "p99_ms": round(pct(self.latencies, 0.99), 3),
        }


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def load(
    call: Callable[[], Awaitable[object]],
    concurrency: int,
    count: int,
    seconds: float,
    into: Pool,
    gateway: psutil.Process | None,
) -> None:
    """`count` calls (or until `seconds`) spread over `concurrency` callers."""
    deadline = time.monotonic() + seconds
    remaining = count

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            start = time.perf_counter()
            await call()
            into.latencies.append(time.perf_counter() - start)

    started, cpu = time.perf_counter(), cpu_seconds(gateway)
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    into.seconds += time.perf_counter() - started
    into.gateway_cpu += cpu_seconds(gateway) - cpu


class DirectCaller:
    """records.GetDocument with the principal + scope the gateway would forward, re-signed
    before its 60-second validity runs out (as the gateway's cache does)."""

    def __init__(self, setup: Setup, fixture: Fixture) -> None:
        secrets = setup.secrets
        route = build_routes()[GET_DOCUMENT]
        self._consent_channel = grpc.aio.insecure_channel(setup.target("consent"))
        keys = {secrets.principal_key_id: secrets.principal_key}
        self._decisions = Decisions(
            consent_pb2_grpc.ConsentServiceStub(self._consent_channel),
            InternalCredentials("gateway", secrets.principal_key_id, keys),
            secrets.principal_key_id,
            secrets.principal_key,
            ttl_s=0,
        )
        self._route = route
        self._caller = Caller(f"cert:{fixture.doctor.rpps}", fixture.doctor)
        self._request = R.GetDocumentRequest(name=fixture.document)
        self._channel = grpc.aio.insecure_channel(setup.target("records"))
        self._stub = records_pb2_grpc.RecordsServiceStub(self._channel)
        self._metadata: tuple[tuple[str, bytes], ...] = ()
        self._signed_at = 0.0

    async def refresh(self) -> None:
        signed = await self._decisions.admit(
            self._route, self._caller, self._request.SerializeToString(), None
        )
        self._metadata = ((principals.METADATA_KEY, signed),)
        self._signed_at = time.monotonic()

    async def __call__(self) -> object:
        if time.monotonic() - self._signed_at > 20:
            await self.refresh()
        return await self._stub.GetDocument(self._request, metadata=self._metadata, timeout=10)

    async def close(self) -> None:
        await self._channel.close()
        await self._consent_channel.close()


def gateway_caller(setup: Setup, port: int, document: str) -> Callable[[], Awaitable[object]]:
    stub = records_pb2_grpc.RecordsServiceStub(setup.card_channel("doctor", port))
    request = R.GetDocumentRequest(name=document)

    def call() -> Awaitable[object]:
        return stub.GetDocument(request, timeout=10)  # type: ignore[no-any-return]

    return call


async def measure(stack: DevStack, gateways: Gateways, args: argparse.Namespace) -> dict:
    setup = Setup(stack, gateways)
    fixture = await setup.run()
    direct = DirectCaller(setup, fixture)
    await direct.refresh()
    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "direct": direct,
        "gateway_cached": gateway_caller(setup, gateways.cached, fixture.document),
        "gateway_uncached": gateway_caller(setup, gateways.uncached, fixture.document),
    }
    processes = {
        "gateway_cached": psutil.Process(stack.process("gateway").pid),
        "gateway_uncached": psutil.Process(gateways.process.pid),
    }
    # Short slices, cases alternating: the machine's load drifts (other work shares the
    # two cores), and alternating gives every case the same share of that drift.
    slices = args.slices
    bounds = {1: (args.count1, args.seconds), 32: (args.count32, args.seconds)}
    pools: dict[str, Pool] = {}
    try:
        for call in cases.values():
            for _ in range(50):  # warm-up: connections, caches, the decision
                await call()
        for concurrency, (count, seconds) in bounds.items():
            for _ in range(slices):
                for name, call in cases.items():
                    if args.only and name not in args.only:
                        continue
                    pool = pools.setdefault(f"{name}_c{concurrency}", Pool())
                    gateway = processes.get(name)
                    await load(call, concurrency, count // slices, seconds / slices, pool, gateway)
            for name in cases:
                key = f"{name}_c{concurrency}"
                if key in pools:
                    f = pools[key].figures()
                    print(
                        f"{name:17s} c={concurrency:<2d} {f['calls']:6.0f} calls "
                        f"{f['qps']:8.1f} qps p50 {f['p50_ms']:7.3f} ms p99 {f['p99_ms']:7.3f} ms "
                        f"gateway CPU {f['gateway_cpu_ms_per_call']:.3f} ms/call",
                        flush=True,
                    )
    finally:
        await direct.close()
        await setup.close()
    return {key: pool.figures() for key, pool in pools.items()}


def ratios(cases: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for concurrency in (1, 32):
        direct = cases.get(f"direct_c{concurrency}")
        if direct is None:
            continue
        suffix = "" if concurrency == 1 else "_c32"
        for kind in ("cached", "uncached"):
            gateway = cases.get(f"gateway_{kind}_c{concurrency}")
            if gateway is None:
                continue
            out[f"p50_ratio_{kind}{suffix}"] = round(gateway["p50_ms"] / direct["p50_ms"], 3)
            out[f"p99_ratio_{kind}{suffix}"] = round(gateway["p99_ms"] / direct["p99_ms"], 3)
            out[f"qps_ratio_{kind}{suffix}"] = round(gateway["qps"] / direct["qps"], 3)
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--slices", type=int, default=10, help="alternating slices per case")
    parser.add_argument("--count1", type=int, default=3000, help="calls per 1-caller case")
    parser.add_argument("--count32", type=int, default=8000, help="calls per 32-caller case")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per case")
    parser.add_argument("--only", nargs="*", help="cases to run (direct, gateway_cached, ...)")
    parser.add_argument(
        "--profile", type=Path, help="run the caching gateway under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of both gateways (experiments, e.g. DMP_TRACE_SAMPLE_RATIO=0)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    parser.add_argument("--keep", type=Path, help="use this directory for var/ and keep it")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    pg_urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dmp-bench-gw-") as tmp:
        var = (args.keep or Path(tmp)) / "var"
        if args.backend == "postgresql":
            pg_urls = asyncio.run(create_pg_databases(run_id))
        gateway_extra = dict(BENCH_GATEWAY_ENV, DMP_DECISION_CACHE_TTL_S="5")
        gateway_extra.update(item.split("=", 1) for item in args.gateway_env)
        cfg = StackConfig(
            var_dir=var,
            base_port=free_base(),
            nats_port=free_port(),
            smtp_port=free_port(),
            gateway_port=free_port(),
            patient_port=free_port(),
            gateway_probe_port=free_port(),
            only=(*SERVICES, "gateway"),
            database_urls=pg_urls,
            extra_env={"gateway": gateway_extra},
        )
        stack = DevStack(cfg)
        uncached: ServiceProcess | None = None
        try:
            stack.prepare()
            stack.launch()
            if args.profile is not None:
                profile_gateway(stack, args.profile)
            port, uncached = start_uncached_gateway(stack)
            gateways = Gateways(cfg.gateway_port, port, cfg.patient_port, uncached)
            cases = uvloop.run(measure(stack, gateways, args))
        finally:
            if uncached is not None:
                stop_all([uncached], 15)
            stack.stop()
            if pg_urls:
                asyncio.run(drop_pg_databases(pg_urls))

    result = {
        "backend": args.backend,
        "services": "identity, records, consent, gateway (launcher DevStack) + a TTL-0 gateway",
        "client": "this process, uvloop, generated stubs; gateway over mTLS with the doctor card",
        "headline_concurrency": 1,
        "slices": args.slices,
        **ratios(cases),
        "cases": cases,
        "gateway_env": gateway_extra,
        "goal": {"p50_ratio_cached": 1.5},
    }
    print(json.dumps({k: v for k, v in result.items() if "ratio" in k}, indent=2))
    met = result.get("p50_ratio_cached", 99) <= 1.5
    print(f"goal p50_ratio_cached <= 1.5: {'met' if met else 'NOT met'}")
    if not args.no_write:
        # Top level: this run; `by_backend` keeps the last run of each backend side by side.
        by_backend = {}
        if RESULTS.exists():
            by_backend = json.loads(RESULTS.read_text()).get("by_backend", {})
        by_backend[args.backend] = result
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**result, "by_backend": by_backend}, indent=2) + "\n")


if __name__ == "__main__":
    main()
