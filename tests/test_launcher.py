"""`dmp dev up` (what `make run` runs): the whole platform comes up with no PostgreSQL or
NATS installed, the gateway in front with a dev PKI whose cards work, serves real RPCs, stops
cleanly on SIGTERM and keeps its data (a second start re-registers the cards harmlessly)."""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import nats
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_cli import catalog
from dmp_dev.launcher.secrets import load as load_secrets
from dmp_dev.testing.principals import internal, professional
from dmp_dev.testing.stack import free_config
from kit import principal as principals
from kit.rpps import check_digit
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request, doc

pytestmark = pytest.mark.slow

READY_LINE = "DMP platform ready"
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
IDENTITY = "/dmp.identity.v1.IdentityService/"


class Launcher:
    """`dmp dev up` as a child process, its output collected by a thread."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        # Free, distinct ports outside the service block, chosen as the test stack does.
        ports = free_config(var_dir)
        self.base_port = ports.base_port
        self.nats_port = ports.nats_port
        self.smtp_port = ports.smtp_port
        self.gateway_port, self.patient_port = ports.gateway_port, ports.patient_port
        self.probe_port = ports.gateway_probe_port
        self.http_port = ports.http_port
        self.lines: list[str] = []
        self.ready = threading.Event()
        dmp = Path(sys.executable).parent / "dmp"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
        self.proc = subprocess.Popen(
            [
                str(dmp),
                "dev",
                "up",
                "--var-dir",
                str(var_dir),
                "--base-port",
                str(self.base_port),
                "--nats-port",
                str(self.nats_port),
                "--smtp-port",
                str(self.smtp_port),
                "--gateway-port",
                str(self.gateway_port),
                "--patient-port",
                str(self.patient_port),
                "--probe-port",
                str(self.probe_port),
                "--http-port",
                str(self.http_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "COLUMNS": "200"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY_LINE in line:
                self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> float:
        started = time.monotonic()
        deadline = started + READY_TIMEOUT_S
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"`dmp dev up` did not become ready:\n{self.output}")
        return time.monotonic() - started

    def target(self, service: str) -> str:
        return f"127.0.0.1:{catalog.spec(service).port(self.base_port)}"

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"`dmp dev up` did not stop on SIGTERM:\n{self.output}")


def _https_status(launcher: Launcher, path: str) -> int:
    """The HTTP status of a GET on the gateway's HTTPS door (the dev CA trusted)."""
    context = ssl.create_default_context(cafile=str(launcher.var_dir / "pki" / "ca.crt"))
    connection = http.client.HTTPSConnection("localhost", launcher.http_port, context=context)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def _card_channel(launcher: Launcher, card: str) -> grpc.Channel:
    """A client of the gateway's card port, as a practice software would connect."""
    pki_dir = launcher.var_dir / "pki"
    credentials = grpc.ssl_channel_credentials(
        (pki_dir / "ca.crt").read_bytes(),
        private_key=(pki_dir / "cards" / f"{card}.key").read_bytes(),
        certificate_chain=(pki_dir / "cards" / f"{card}.crt").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{launcher.gateway_port}", credentials)


def _doctor_writes(launcher: Launcher, dossier: str) -> str:
    """The demo doctor's card (registered by the launcher) writes a document via the gateway.

    consent learns about a new record from records' events: until it has, the
    gateway answers NOT_FOUND, so poll for a bounded time.
    """
    deadline = time.monotonic() + 30
    with _card_channel(launcher, "doctor") as channel:
        stub = records_pb2_grpc.RecordsServiceStub(channel)
        while True:
            request = records_pb2.CreateDocumentRequest(
                parent=dossier, document=doc(), request_id=str(uuid.uuid4())
            )
            try:
                return str(stub.CreateDocument(request, timeout=10).name)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:  # type: ignore[attr-defined]
                    raise
            time.sleep(0.2)


def _serving(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(reply.status)


def _signed(var_dir: Path, principal: object, method: str) -> tuple[tuple[str, bytes], ...]:
    """Metadata signed with the launcher's own dev key, as the gateway will sign it."""
    secrets = load_secrets(var_dir / "secrets")
    return principals.metadata_for(
        principal,  # type: ignore[arg-type]
        IDENTITY + method,
        secrets.principal_key_id,
        secrets.principal_key,
    )


def _stream_messages(nats_port: int, stream: str) -> int:
    async def count() -> int:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def _identity_events(nats_port: int) -> int:
    """Wait for the outbox relay to publish identity's events; return how many the stream has."""
    deadline = time.monotonic() + 30
    while (found := _stream_messages(nats_port, "DMP_IDENTITY")) == 0:
        if time.monotonic() > deadline:
            pytest.fail("identity's event never reached JetStream")
        time.sleep(0.2)
    return found


def _rpps() -> str:
    first_ten = "1" + "".join(random.choice("0123456789") for _ in range(9))
    return first_ten + check_digit(first_ten)


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_dev_up_serves_stops_cleanly_and_keeps_data(var_dir: Path) -> None:
    assert catalog.spec("identity").exists(), "identity is needed to exercise a real RPC"

    launcher = Launcher(var_dir)
    try:
        launcher.wait_ready()
        services = catalog.available()
        for spec in services:
            status = _serving(launcher.target(spec.name))
            assert status == health_pb2.HealthCheckResponse.SERVING, spec.name
            assert launcher.target(spec.name) in launcher.output  # the table shows where
        assert (
            _serving(f"127.0.0.1:{launcher.probe_port}") == health_pb2.HealthCheckResponse.SERVING
        )
        for where in (f"localhost:{launcher.gateway_port}", f"localhost:{launcher.patient_port}"):
            assert where in launcher.output
        assert str(var_dir / "pki" / "ca.crt") in launcher.output
        # The ready table names the portal's URL on a line of its own, and the JSON door's.
        web = f"https://localhost:{launcher.http_port}"
        assert any("portal" in line and f"{web}/portail/" in line for line in launcher.lines)
        assert f"{web}/v1/" in launcher.output
        assert _https_status(launcher, "/v1/openapi.json") == 200

        # A staff card (mapped from its subject) creates a record, a professional card
        # (registered in identity's directory by the launcher) writes into it.
        with _card_channel(launcher, "desk") as channel:
            desk = records_pb2_grpc.RecordsServiceStub(channel)
            dossier = desk.CreateDossier(create_request(make_ins()), timeout=15).name
        assert _doctor_writes(launcher, dossier).startswith(dossier + "/documents/")

        secrets_dir = var_dir / "secrets"
        for path in secrets_dir.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path
        principal_file = (secrets_dir / "principal.json").read_bytes()

        rpps = _rpps()
        with grpc.insecure_channel(launcher.target("identity")) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            created = stub.CreateProfessional(
                identity_pb2.CreateProfessionalRequest(
                    request_id=str(uuid.uuid4()),
                    professional=identity_pb2.Professional(
                        rpps=rpps, family_name="Martin", given_name="Claire", profession_code="10"
                    ),
                ),
                metadata=_signed(var_dir, internal("gateway"), "CreateProfessional"),
                timeout=10,
            )
            assert created.rpps == rpps
        events = _identity_events(launcher.nats_port)
        children = launcher.children()
        assert len(children) >= len(services) + 2  # services + gateway + nats-server
    finally:
        code = launcher.stop()
    assert code == 0, launcher.output
    assert not _alive(children), f"orphans after SIGTERM: {_alive(children)}"

    # Second start on the same var dir: same secrets, same data.
    again = Launcher(var_dir)
    try:
        again.wait_ready()
        assert (var_dir / "secrets" / "principal.json").read_bytes() == principal_file
        with grpc.insecure_channel(again.target("identity")) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            reader = professional(rpps="10003456786", profession="10")
            found = stub.GetProfessional(
                identity_pb2.GetProfessionalRequest(name=created.name),
                metadata=_signed(var_dir, reader, "GetProfessional"),
                timeout=10,
            )
        assert (found.rpps, found.family_name) == (rpps, "Martin")
        assert _stream_messages(again.nats_port, "DMP_IDENTITY") >= events  # NATS store kept
        # Same PKI, cards registered again without error: the doctor's card still works.
        assert "registered with another certificate" not in again.output
        assert _doctor_writes(again, dossier).startswith(dossier + "/documents/")
        children = again.children()
    finally:
        code = again.stop()
    assert code == 0, again.output
    assert not _alive(children)
