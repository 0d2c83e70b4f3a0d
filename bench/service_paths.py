"""Service hot paths against the gRPC floor: records.GetDocument and consent.Authorize called
directly, next to a bare grpc.aio echo server measured in the same run.

Each server runs in a process of its own (`--serve`, started by this script), as in
production: INFO JSON logs (to /dev/null), the real interceptors, a pool of the default size.
The load generator is this process (one channel, N caller tasks, principals signed once per
phase). Every answer is checked and every error counted; a phase with errors fails the bench.

How each figure is measured:
- CPU per call: the server process reads its own `resource.getrusage(RUSAGE_SELF)` (user +
  system seconds) before and after the phase, on request over its stdin/stdout; divided by the
  calls answered in between.
- Round trips per call: the server process counts what it sends to the database. PostgreSQL:
  an asyncpg query logger on every pooled connection (catches the simple-protocol statements:
  BEGIN, COMMIT, ROLLBACK, the pool's pre-ping and anything run through `Connection.execute` /
  `fetch*`) plus a SQLAlchemy `before_cursor_execute` listener (the prepared statements the
  dialect runs, which asyncpg's logger does not see). SQLite: the sqlite3 trace callback (every
  statement the library runs, implicit BEGIN and COMMIT included); reported as statements.
  Divided by the calls answered in the phase.
- QPS: calls answered / wall seconds of the phase; the echo ratio uses the echo of this run.

PostgreSQL is the headline (`bench/results/service_paths.json` top level); SQLite is reported
under `sqlite`. Bounded: each phase stops at its call count or its seconds, whichever first.

    .venv/bin/python bench/service_paths.py [--quick] [--backend postgresql|sqlite|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmp.authz.v1 import authz_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing import principals
from dmp_dev.testing.databases import PG_ADMIN_DSN
from kit import migrations
from kit.db import create_engine, utcnow
from kit.logs import configure_logging
from tests.fixtures.records import make_ins, professional

R = records_pb2
RESULTS = Path(__file__).parent / "results" / "service_paths.json"
GET_DOCUMENT = "/dmp.records.v1.RecordsService/GetDocument"
AUTHORIZE = "/dmp.consent.v1.ConsentService/Authorize"
ECHO_PAYLOAD = b"x" * 200
RECORDS = [f"dossiers/bench{i}" for i in range(50)]
DOCTOR = principals.professional("81000000001", "10", "SM26")
DOCUMENTS = 20
CONTENT = b"%PDF-1.7\n" + b"compte rendu " * 150  # ~2 KiB


# -- server side (`--serve`) -------------------------------------------------------------------


class Counter:
    statements = 0


def _count(*_: Any, **__: Any) -> None:
    Counter.statements += 1


def install_counters() -> None:
    """Count every statement the process sends to its database (see the module docstring)."""
    from sqlalchemy import event  # noqa: PLC0415 - server side only
    from sqlalchemy.engine import Engine  # noqa: PLC0415
    from sqlalchemy.pool import Pool  # noqa: PLC0415

    @event.listens_for(Pool, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        driver = dbapi_connection.driver_connection
        if hasattr(driver, "add_query_logger"):  # asyncpg
            driver.add_query_logger(_count)
        else:  # aiosqlite: its sqlite3 connection
            driver._conn.set_trace_callback(_count)

    @event.listens_for(Engine, "before_cursor_execute")
    def _on_execute(conn: Any, *_: Any) -> None:
        if conn.dialect.name == "postgresql":
            Counter.statements += 1


ECHO = "echo"


class _Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: Any) -> Any:
        async def echo(request: bytes, context: Any) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


async def serve(kind: str, url: str) -> None:
    """Run one server; answer `stats` on stdin with this process's CPU and statement count."""
    from kit.server import start_app  # noqa: PLC0415 - server side only
    from services.consent.app import ConsentApp  # noqa: PLC0415
    from services.consent.settings import ConsentSettings  # noqa: PLC0415
    from services.records.app import RecordsApp  # noqa: PLC0415
    from services.records.settings import RecordsSettings  # noqa: PLC0415

    install_counters()
    configure_logging(kind, "INFO", json_output=True)  # as production: one JSON line per RPC
    stop: Any
    if kind == ECHO:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_Echo(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = server.stop
    else:
        common = {"database_url": url, "log_level": "INFO", "log_json": True}
        app: Any
        if kind == "records":
            app = RecordsApp(RecordsSettings(**common))  # type: ignore[arg-type]
        else:
            app = ConsentApp(ConsentSettings(**common))  # type: ignore[arg-type]
        app.needs_nats = lambda: False  # GetDocument / Authorize publish nothing
        running = await start_app(app)
        port = running.port
        stop = running.stop
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {"cpu_s": usage.ru_utime + usage.ru_stime, "statements": Counter.statements}
            print(json.dumps(stats), flush=True)
        else:
            break
    await stop(0)


# -- load side ---------------------------------------------------------------------------------


class Server:
    """A `--serve` child process."""

    def __init__(self, kind: str, url: str = "") -> None:
        # Logs go to a file nobody reads (production writes them too: their cost counts), kept
        # only to say why a server did not start.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--database-url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            self.log.seek(0)
            tail = self.log.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{kind} server did not start (exit {self.proc.wait()}): {tail}")
        self.target = f"127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict[str, float]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class Phase:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    statements: float = 0.0

    def pct_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


PROFILES = Path(__file__).parent / "results" / "profiles"
# Layers of the closing note, by the first matching file path in a sampled stack (leaf first).
LAYERS = (
    ("database (SQLAlchemy, driver)", ("sqlalchemy/", "asyncpg/", "aiosqlite/", "sqlite3/")),
    ("domain (services/)", ("services/",)),
    ("logs", ("structlog/", "kit/logs.py", "logging/")),
    ("gRPC and interceptors", ("grpc/", "kit/interceptors.py", "kit/observe.py", "kit/")),
)


def summarise(raw: Path, title: str) -> str:
    """A short text summary of a py-spy `--format raw` profile: share per layer, top frames."""
    layers: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        layer = "other (event loop, protobuf, idle poll)"
        for frame in reversed(frames):
            found = next((n for n, marks in LAYERS if any(m in frame for m in marks)), None)
            if found:
                layer = found
                break
        layers[layer] = layers.get(layer, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"# {title}: {total} samples", "", "## share by layer (leaf-most known frame)"]
    for name, count in sorted(layers.items(), key=lambda kv: -kv[1]):
        lines.append(f"{100 * count / max(total, 1):5.1f} %  {name}")
    lines += ["", "## top 25 leaf frames"]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"{100 * count / max(total, 1):5.1f} %  {frame}")
    return "\n".join(lines) + "\n"


def start_profile(server: Server, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    raw = Path(tempfile.mkstemp(prefix="dmp-pyspy-", suffix=".txt")[1])
    spy = Path(sys.executable).with_name("py-spy")
    pid, duration = str(server.proc.pid), str(int(seconds))
    proc = subprocess.Popen(
        [str(spy), "record", "-p", pid, "-d", duration, "-r", "250", "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, raw


async def drive(
    server: Server | None,
    target: str,
    call: Any,
    callers: int,
    max_calls: int,
    seconds: float,
    profile: str = "",
) -> Phase:
    """`callers` tasks calling `call(stub_channel, i)` until `max_calls` or `seconds`;
    `profile`: the name of a py-spy summary of the server during the phase."""
    phase = Phase()
    async with grpc.aio.insecure_channel(target) as channel:
        for i in range(min(200, max_calls)):  # warm-up: pools, statement caches
            await call(channel, i)
        before = server.stats() if server else {}
        spy = start_profile(server, seconds) if server and profile else None
        counter = iter(range(max_calls))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                try:
                    await call(channel, i)
                except (grpc.aio.AioRpcError, AssertionError):
                    phase.errors += 1
                    continue
                phase.latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(callers)))
        phase.seconds = time.perf_counter() - began
        phase.calls = len(phase.latencies)
        if server:
            after = server.stats()
            phase.cpu_s = after["cpu_s"] - before["cpu_s"]
            phase.statements = after["statements"] - before["statements"]
    if spy is not None:
        await asyncio.to_thread(spy[0].wait, seconds + 30)
        PROFILES.mkdir(parents=True, exist_ok=True)
        summary = summarise(spy[1], f"{profile}, {phase.calls} calls in {phase.seconds:.1f} s")
        (PROFILES / f"{profile}.txt").write_text(summary)
        spy[1].unlink()
    return phase


def echo_call() -> Any:
    async def call(channel: grpc.aio.Channel, i: int) -> None:
        answer = await channel.unary_unary("/bench.Echo/Echo")(ECHO_PAYLOAD, timeout=10)
        assert answer == ECHO_PAYLOAD

    return call


async def seed_records(target: str) -> tuple[str, list[str]]:
    """One record with `DOCUMENTS` documents, created through the API (as in production)."""
    pro = professional()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = records_pb2_grpc.RecordsServiceStub(channel)
        dossier = await stub.CreateDossier(
            R.CreateDossierRequest(
                dossier=R.Dossier(
                    patient_ins=make_ins(424_242),
                    identity=R.PatientIdentity(
                        birth_family_name="BENCH",
                        birth_given_names=["Paths"],
                        birth_date=R.Date(year=1970, month=1, day=1),
                        sex=R.SEX_MALE,
                    ),
                ),
                professional=R.ProfessionalCreation(
                    consent=R.ConsentAttestation(consent_obtained=True, information_given=True)
                ),
                request_id=str(uuid.uuid4()),
            ),
            metadata=principals.metadata(pro, "/dmp.records.v1.RecordsService/CreateDossier"),
        )
        names = []
        for n in range(DOCUMENTS):
            document = await stub.CreateDocument(
                R.CreateDocumentRequest(
                    parent=dossier.name,
                    document=R.Document(
                        title=f"CR {n}",
                        type_code="11488-4",
                        format=R.DOCUMENT_FORMAT_PDF,
                        content=CONTENT,
                    ),
                    request_id=str(uuid.uuid4()),
                ),
                metadata=principals.metadata(pro, "/dmp.records.v1.RecordsService/CreateDocument"),
            )
            names.append(document.name)
    return dossier.name, names


def get_document_call(names: list[str]) -> Any:
    metadata = principals.metadata(professional(), GET_DOCUMENT)  # valid 60 s: one phase

    async def call(channel: grpc.aio.Channel, i: int) -> None:
        stub = records_pb2_grpc.RecordsServiceStub(channel)
        name = names[i % len(names)]
        document = await stub.GetDocument(
            R.GetDocumentRequest(name=name), metadata=metadata, timeout=10
        )
        assert document.name == name
        assert document.content == CONTENT

    return call


async def seed_consent(url: str) -> None:
    from services.consent.models import access_rules, record_states  # noqa: PLC0415

    engine = create_engine(url, pool_size=1, max_overflow=0)
    now = utcnow()
    try:
        async with engine.begin() as conn:
            for i, dossier in enumerate(RECORDS):
                await conn.execute(
                    record_states.insert().values(
                        dossier=dossier,
                        patient_ins=make_ins(500_000 + i),
                        state=records_pb2.DOSSIER_STATE_ACTIVE,
                        minor=False,
                        update_time=now,
                    )
                )
                await conn.execute(
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
    finally:
        await engine.dispose()


def authorize_call(records: list[str]) -> Any:
    metadata = principals.metadata(principals.internal(), AUTHORIZE)

    async def call(channel: grpc.aio.Channel, i: int) -> None:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        response = await stub.Authorize(
            consent_pb2.AuthorizeRequest(
                principal=DOCTOR,
                action=authz_pb2.ACTION_READ,
                resource_kind=authz_pb2.RESOURCE_KIND_DOCUMENT,
                dossier=records[i % len(records)],
                method=GET_DOCUMENT,
                resource=consent_pb2.ResourceAttributes(document_class_code="10"),
            ),
            metadata=metadata,
            timeout=10,
        )
        assert response.decision == consent_pb2.DECISION_ALLOWED

    return call


class Databases:
    """Private databases for one backend, dropped at the end."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.created: list[str] = []
        self.tmp = tempfile.mkdtemp(prefix="dmp-bench-paths-")

    async def create(self, label: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp}/{label}.db"
        import asyncpg  # noqa: PLC0415 - PostgreSQL only

        name = f"dmp_bench_paths_{label}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.created.append(name)
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"

    async def drop(self) -> None:
        if not self.created:
            return
        import asyncpg  # noqa: PLC0415

        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for name in self.created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_backend(
    backend: str, quick: bool, echo_qps: float, profile: str = ""
) -> dict[str, Any]:
    """`profile`: a label; the py-spy summaries go to results/profiles/<phase>_<backend>_<label>."""
    seconds = 3.0 if quick else 12.0
    max_calls = 2_000 if quick else 40_000
    dbs = Databases(backend)
    records_server = consent_server = None
    try:
        records_url = await dbs.create("records")
        consent_url = await dbs.create("consent")
        await migrations.upgrade("records", records_url)
        await migrations.upgrade("consent", consent_url)
        await seed_consent(consent_url)
        records_server = await asyncio.to_thread(Server, "records", records_url)
        _, names = await seed_records(records_server.target)
        get = await drive(
            records_server,
            records_server.target,
            get_document_call(names),
            32,
            max_calls,
            seconds,
            f"get_document_{backend}_{profile}" if profile else "",
        )
        records_server.close()
        records_server = None
        consent_server = await asyncio.to_thread(Server, "consent", consent_url)
        spread = await drive(
            consent_server,
            consent_server.target,
            authorize_call(RECORDS),
            8,
            max_calls,
            seconds,
            f"authorize_{backend}_{profile}" if profile else "",
        )
        hot = await drive(
            consent_server,
            consent_server.target,
            authorize_call(RECORDS[:1]),
            32,
            max_calls,
            seconds,
        )
    finally:
        for server in (records_server, consent_server):
            if server is not None:
                server.close()
        await dbs.drop()
    for label, phase in (("get_document", get), ("authorize", spread), ("hot_record", hot)):
        if phase.errors or not phase.calls:
            raise SystemExit(f"{backend} {label}: {phase.errors} errors, {phase.calls} answers")
    get_qps = get.calls / get.seconds
    return {
        "get_document_cpu_ms": round(get.cpu_s / get.calls * 1000, 3),
        "get_document_qps": round(get_qps, 1),
        "get_document_qps_ratio_echo": round(get_qps / echo_qps, 4),
        "get_document_round_trips": round(get.statements / get.calls, 2),
        "get_document_p50_ms": round(get.pct_ms(0.50), 3),
        "get_document_p99_ms": round(get.pct_ms(0.99), 3),
        "get_document_calls": get.calls,
        "authorize_decisions_per_s": round(spread.calls / spread.seconds, 1),
        "authorize_cpu_ms": round(spread.cpu_s / spread.calls * 1000, 3),
        "authorize_p50_ms": round(spread.pct_ms(0.50), 3),
        "authorize_p99_ms": round(spread.pct_ms(0.99), 3),
        "authorize_round_trips": round(spread.statements / spread.calls, 2),
        "authorize_calls": spread.calls,
        "authorize_hot_record_per_s": round(hot.calls / hot.seconds, 1),
        "authorize_hot_record_p99_ms": round(hot.pct_ms(0.99), 3),
        "authorize_hot_record_round_trips": round(hot.statements / hot.calls, 2),
        "authorize_hot_record_calls": hot.calls,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    echo_server = await asyncio.to_thread(Server, ECHO)
    try:
        echo = await drive(
            echo_server,
            echo_server.target,
            echo_call(),
            32,
            5_000 if args.quick else 100_000,
            3.0 if args.quick else 8.0,
        )
    finally:
        echo_server.close()
    if echo.errors or not echo.calls:
        raise SystemExit(f"echo: {echo.errors} errors")
    echo_qps = echo.calls / echo.seconds
    print(f"echo: {echo_qps:.0f} QPS, {echo.cpu_s / echo.calls * 1000:.3f} ms CPU", flush=True)
    out: dict[str, Any] = {
        "echo_qps": round(echo_qps, 1),
        "echo_cpu_ms": round(echo.cpu_s / echo.calls * 1000, 3),
    }
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    for backend in backends:
        figures = await run_backend(backend, args.quick, echo_qps, args.profile)
        print(f"{backend}: {json.dumps(figures)}", flush=True)
        if backend == "postgresql":
            out.update(figures)
        else:
            out[backend] = figures
    out["headline_backend"] = backends[0]
    out["quick"] = args.quick
    out["load"] = f"loadavg at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (smoke run)")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--serve", choices=["records", "consent", ECHO], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument(
        "--profile", default="", help="label: py-spy summaries to results/profiles/ (dev extra)"
    )
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(serve(ns.serve, ns.database_url))
        sys.exit(0)
    result = asyncio.run(main(ns))
    print(json.dumps(result, indent=2))
    target = Path(ns.output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
