"""The whole platform started by the launcher, for end-to-end, demo, fault and log tests.

`running_stack(databases, var_dir)` runs `dmp_dev.launcher.DevStack` (the code behind
`make run`) in a temporary var directory on free ports, each service on a
database of the test plugin's `databases` factory (PostgreSQL when reachable,
else SQLite). The returned `LiveStack` opens gRPC channels to the gateway with
a card or as a patient, signs patient tokens with the stack's own identity key,
reads the dev mail/SMS sinks and the logs, and stops, kills or restarts one
process for fault tests. `tests/fixtures/stack.py` wraps it in the session
fixture `stack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc

from dmp.authz.v1 import principal_pb2
from dmp_cli import catalog
from dmp_dev.launcher.secrets import DevSecrets
from dmp_dev.launcher.stack import (
    GATEWAY_PORT_STRIDE,
    SERVICE_PORT_STRIDE,
    DevStack,
    StackConfig,
    database_url,
    replica_name,
)
from dmp_dev.testing.databases import SMALL_POOLS, DatabaseFactory
from kit import clients as kit_clients
from kit import clock
from kit import principal as principals
from kit.tokens import AccessTokenIssuer, load_private_key

HOST = "localhost"  # the gateway certificate's SAN

# Under every test stack's own settings: argon2 at its cheapest (production's costs, ~0.3 s
# a hash on a busy 2-core machine, would dominate every sign-up and login of the suite;
# identity's own tests and the benchmark check the real parameters); small PostgreSQL pools
# (dmp_dev.testing.databases.SMALL_POOLS) and 4 notify send slots instead of 16, each with a
# connection of its own (a test that needs more sets them).
TEST_ENV: Mapping[str, Mapping[str, str]] = {
    "identity": {
        **SMALL_POOLS,
        "DMP_ARGON2_TIME_COST": "1",
        "DMP_ARGON2_MEMORY_COST": "1024",
        "DMP_ARGON2_PARALLELISM": "1",
    },
    "consent": SMALL_POOLS,
    "records": SMALL_POOLS,
    "history_feed": SMALL_POOLS,
    "notify": {**SMALL_POOLS, "DMP_DISPATCH_CONCURRENCY": "4"},
}


# In the var directory: the seconds every process of a test stack adds to real time
# (kit.clock.OffsetFileClock, DMP_DEV_CLOCK_OFFSET_FILE); `LiveStack.advance_clock` writes it.
CLOCK_OFFSET_FILE = "clock-offset"


def stack_env(
    extra_env: Mapping[str, Mapping[str, str]] | None, clock_file: Path
) -> dict[str, dict[str, str]]:
    """`TEST_ENV`, the shared clock offset file, and a test's own settings over them, per
    process."""
    merged = {name: dict(env) for name, env in TEST_ENV.items()}
    for name in [spec.name for spec in catalog.available()] + [catalog.GATEWAY.name]:
        merged.setdefault(name, {})[clock.OFFSET_FILE_ENV] = str(clock_file)
    for name, env in (extra_env or {}).items():
        merged.setdefault(name, {}).update(env)
    return merged


# Test stacks take their ports below Linux's ephemeral range (32768-60999, where outgoing
# connections and bind(("", 0)) get theirs, so none of those can steal a stack's port between
# its choice and its bind), in a slice of their own per pytest-xdist worker: two workers of one
# run never pick the same port.
PORT_RANGE = (20000, 32768)


def worker_port_range() -> tuple[int, int]:
    """[low, high) ports this process's stacks choose from: the whole `PORT_RANGE`, or this
    pytest-xdist worker's slice of it (PYTEST_XDIST_WORKER=gwN of PYTEST_XDIST_WORKER_COUNT)."""
    low, high = PORT_RANGE
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    if not worker.startswith("gw") or count <= 1:
        return low, high
    index = int(worker[2:]) % count
    width = (high - low) // count
    return low + index * width, low + (index + 1) * width


def free_port_block(size: int, *, low: int | None = None, high: int | None = None) -> int:
    """A base port followed by `size - 1` free ports, in [low, high) (by default this
    process's `worker_port_range`)."""
    default_low, default_high = worker_port_range()
    low = default_low if low is None else low
    high = default_high if high is None else high
    for _ in range(200):
        base = random.randint(low, high - size)  # noqa: S311 - a port, not a secret
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


def free_config(var_dir: Path, *, replicas: int = 1, nats_nodes: int = 1) -> StackConfig:
    """A StackConfig on free ports (nothing collides with `make run`, another test run or
    another worker of this one): the services' block (one per replica), then SMTP, the
    gateway replicas' card, patient, probe and HTTP ports, NATS client and route ports, all
    checked free."""
    services = SERVICE_PORT_STRIDE * replicas
    gateways = GATEWAY_PORT_STRIDE * replicas
    routes = nats_nodes if nats_nodes > 1 else 0
    base = free_port_block(services + 1 + gateways + nats_nodes + routes)
    smtp = base + services
    gateway = smtp + 1
    nats = gateway + gateways
    return StackConfig(
        var_dir=var_dir,
        base_port=base,
        nats_port=nats,
        smtp_port=smtp,
        gateway_port=gateway,
        patient_port=gateway + 1,
        gateway_probe_port=gateway + 2,
        http_port=gateway + 3,
        replicas=replicas,
        nats_nodes=nats_nodes,
        nats_route_port=nats + nats_nodes if routes else 0,
    )


@dataclass
class LiveStack:
    """A launcher-started platform and what a test needs to talk to it."""

    dev: DevStack
    database_urls: Mapping[str, str]
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    _offset: timedelta = timedelta(0)

    # -- time -----------------------------------------------------------------------

    @property
    def clock(self) -> clock.OffsetFileClock:
        """The platform's clock: real time plus what `advance_clock` added."""
        return clock.OffsetFileClock(self.var_dir / CLOCK_OFFSET_FILE)

    def advance_clock(self, delta: timedelta) -> None:
        """Move every process's clock `delta` ahead (the next time rule each one reads sees
        it); the stack's own tokens and signatures follow. Forwards only, for good: a
        session's stack stays ahead for the tests after, so keep `delta` within what they
        tolerate (principal signatures live 60 s)."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forwards")
        self._offset += delta
        clock.write_offset(self.var_dir / CLOCK_OFFSET_FILE, self._offset)

    # -- where things are ---------------------------------------------------------

    @property
    def cfg(self) -> StackConfig:
        return self.dev.cfg

    @property
    def var_dir(self) -> Path:
        return self.cfg.var_dir

    @property
    def pki_dir(self) -> Path:
        return self.cfg.pki_dir

    @property
    def cards_dir(self) -> Path:
        return self.cfg.cards_dir

    @property
    def logs_dir(self) -> Path:
        return self.cfg.logs

    @property
    def mail_dir(self) -> Path:
        return self.cfg.mail_dir

    @property
    def sms_dir(self) -> Path:
        return self.cfg.sms_dir

    @property
    def sms_file(self) -> Path:
        return self.cfg.sms_dir / "outbox.ndjson"

    @property
    def nats_url(self) -> str:
        return self.cfg.nats_url

    @property
    def secrets(self) -> DevSecrets:
        if self.dev.secrets is None:
            raise RuntimeError("the stack is not prepared")
        return self.dev.secrets

    @property
    def token_signing_key_file(self) -> Path:
        return self.secrets.token_signing_key_file

    @property
    def ca_pem(self) -> bytes:
        return (self.pki_dir / "ca.crt").read_bytes()

    @property
    def card_address(self) -> str:
        return f"{HOST}:{self.cfg.gateway_port}"

    @property
    def patient_address(self) -> str:
        return f"{HOST}:{self.cfg.patient_port}"

    @property
    def http_url(self) -> str:
        """The HTTP/JSON door's base URL (HTTPS, the dev CA `ca_pem`), no trailing slash."""
        return f"https://{HOST}:{self.cfg.http_port}"

    @property
    def portal_url(self) -> str:
        return f"{self.http_url}/portail/"

    @property
    def gateway_names(self) -> list[str]:
        return [replica_name(catalog.GATEWAY.name, r) for r in range(self.cfg.replicas)]

    def _gateway_target(
        self, which: int, replica: int | None
    ) -> tuple[str, list[tuple[str, object]]]:
        """The address of one gateway replica, or (None, several replicas) all of them
        balanced round_robin with kit.clients' retry policy, as a load balancer in front
        of the gateways would spread clients (the certificate names `localhost`)."""
        if replica is not None or self.cfg.replicas == 1:
            port = self.cfg.gateway_ports(replica or 0)[which]
            return f"{HOST}:{port}", []
        ports = [self.cfg.gateway_ports(r)[which] for r in range(self.cfg.replicas)]
        target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
        options: list[tuple[str, object]] = [
            ("grpc.ssl_target_name_override", HOST),
            ("grpc.default_authority", HOST),
            *kit_clients.RECONNECT_OPTIONS,
            ("grpc.enable_retries", 1),
            ("grpc.service_config", kit_clients.service_config()),
        ]
        return target, options

    def target(self, service: str) -> str:
        """A service's own (plaintext, internal) address."""
        return self.cfg.target(catalog.spec(service))

    @property
    def targets(self) -> dict[str, str]:
        return {s.name: self.cfg.target(s) for s in self.dev.specs}

    def database_url(self, service: str) -> str:
        """The database a service of this stack runs on (tests that import data, e.g. a
        legacy record, write there the way an import job would)."""
        return database_url(catalog.spec(service), self.cfg)

    def log_file(self, name: str) -> Path:
        return self.cfg.logs / f"{name}.log"

    # -- clients ------------------------------------------------------------------

    def card(self, stem: str) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a card in the stack's cards directory."""
        return (
            (self.cards_dir / f"{stem}.crt").read_bytes(),
            (self.cards_dir / f"{stem}.key").read_bytes(),
        )

    def card_channel(
        self,
        card: str | tuple[bytes, bytes],
        *,
        options: list[tuple[str, object]] | None = None,
        replica: int | None = None,
    ) -> grpc.aio.Channel:
        """A channel to the card port presenting `card` (a stem, or a (cert, key) PEM pair);
        with several gateways, to every one (round_robin) unless `replica` picks one."""
        cert, key = self.card(card) if isinstance(card, str) else card
        creds = grpc.ssl_channel_credentials(self.ca_pem, private_key=key, certificate_chain=cert)
        target, balanced = self._gateway_target(0, replica)
        return self._open(target, creds, balanced + (options or []))

    def patient_channel(
        self, *, options: list[tuple[str, object]] | None = None, replica: int | None = None
    ) -> grpc.aio.Channel:
        """A channel to the patient port (TLS, no client certificate); see `card_channel`."""
        target, balanced = self._gateway_target(1, replica)
        return self._open(
            target, grpc.ssl_channel_credentials(self.ca_pem), balanced + (options or [])
        )

    def _open(
        self, address: str, creds: grpc.ChannelCredentials, options: list[tuple[str, object]] | None
    ) -> grpc.aio.Channel:
        channel = grpc.aio.secure_channel(address, creds, options=options or [])
        self._channels.append(channel)
        return channel

    def token(self, ins: str, account: str = "", session_id: str = "") -> str:
        """A patient access token signed with the stack's identity key, as VerifyOneTimeCode
        would issue it (for tests whose subject is not the login itself)."""
        issuer = AccessTokenIssuer(load_private_key(self.token_signing_key_file))
        issued = issuer.issue(
            account=account or f"acct-{ins}",
            ins=ins,
            session_id=session_id or uuid.uuid4().hex,
            now=self.clock.now(),
        )
        return issued.token

    def signed(
        self, principal: principal_pb2.Principal, method: str
    ) -> tuple[tuple[str, bytes], ...]:
        """`dmp-principal-bin` metadata for a direct call to a service (full method path),
        stamped on the platform's clock."""
        with clock.use(self.clock):
            return principals.metadata_for(
                principal, method, self.secrets.principal_key_id, self.secrets.principal_key
            )

    async def close_channels(self) -> None:
        channels, self._channels = self._channels, []
        for channel in channels:
            await channel.close()

    # -- faults -------------------------------------------------------------------

    async def stop_service(self, name: str) -> None:
        """SIGTERM one process (a service or "gateway") and wait for its exit."""
        await asyncio.to_thread(self.dev.stop_one, name)

    async def kill_service(self, name: str) -> None:
        """SIGKILL one process: no graceful shutdown, as after a crash."""
        await asyncio.to_thread(self.dev.stop_one, name, kill=True)

    async def start_service(self, name: str) -> None:
        """Start a stopped process again (same ports, database, env); wait until SERVING."""
        await asyncio.to_thread(self.dev.start_one, name)

    async def restart_service(self, name: str, *, kill: bool = False) -> None:
        await asyncio.to_thread(self.dev.stop_one, name, kill=kill)
        await asyncio.to_thread(self.dev.start_one, name)

    def pid(self, name: str) -> int:
        return self.dev.process(name).pid

    async def kill_nats_node(self, name: str) -> None:
        """SIGKILL one node of the NATS cluster (`nats-2`), as a lost pod."""
        await asyncio.to_thread(self.dev.stop_nats_node, name, kill=True)

    async def start_nats_node(self, name: str) -> None:
        """Start it again on its ports and store: it rejoins the cluster and catches up."""
        await asyncio.to_thread(self.dev.start_nats_node, name)


async def service_databases(databases: DatabaseFactory, label: str = "stack") -> dict[str, str]:
    """A fresh database per service that has migrations, already at its head (a copy of the
    session's template: `DatabaseFactory.migrated`); the launcher's first step, `migrate up`,
    still runs and finds nothing to do. `tests/test_launcher.py` starts from empty files."""
    return {
        spec.name: await databases.migrated(spec.name, f"{label}_{spec.name}")
        for spec in catalog.available()
        if spec.has_migrations()
    }


@contextlib.asynccontextmanager
async def running_stack(
    databases: DatabaseFactory | None,
    var_dir: Path,
    *,
    only: tuple[str, ...] = (),
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    before_launch: Callable[[StackConfig], None] | None = None,
    ready_timeout_s: float = 120.0,
    replicas: int = 1,
    nats_nodes: int = 1,
) -> AsyncIterator[LiveStack]:
    """Start the platform with the launcher; stop it (reverse order) on exit.

    `databases` None keeps the launcher's SQLite files in `var_dir`.
    `before_launch(cfg)` runs after the var directory, secrets and PKI exist
    but before any process starts (e.g. to issue extra cards or revoke one:
    the gateway reads the CRL at start).
    """
    urls = await service_databases(databases) if databases is not None else {}
    cfg = dataclasses.replace(
        free_config(var_dir, replicas=replicas, nats_nodes=nats_nodes),
        database_urls=urls,
        extra_env=stack_env(extra_env, var_dir / CLOCK_OFFSET_FILE),
        ready_timeout_s=ready_timeout_s,
        only=only,
    )
    dev = DevStack(cfg)
    live = LiveStack(dev, urls)
    try:
        # Blocking start-up (migrations, processes, readiness) off the event loop.
        await asyncio.to_thread(dev.prepare)
        if before_launch is not None:
            before_launch(cfg)
        await asyncio.to_thread(dev.launch)
        yield live
    finally:
        await live.close_channels()
        await asyncio.to_thread(dev.stop)
