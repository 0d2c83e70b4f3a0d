"""The whole platform on one machine: NATS, a mail sink, migrated databases, every service, the
gateway in front with a dev PKI.

`DevStack` only knows about files and processes; `dmp_dev.cli.dev` adds the
command line, the signals and the printed table, `dmp_dev.testing.stack` the
test-side conveniences.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dmp_cli import catalog
from dmp_cli.catalog import GATEWAY, ServiceSpec
from dmp_dev import pki
from dmp_dev.launcher.cards import Registration, register_cards, register_establishments
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.launcher.nats_server import NatsCluster, port_in_use
from dmp_dev.launcher.processes import (
    ServiceProcess,
    StartupError,
    log_tail,
    stop_all,
    wait_until_serving,
)
from dmp_dev.launcher.secrets import DevSecrets, load_or_create
from kit import migrations

HOST = "127.0.0.1"
#: Replica r of a service listens on its port + r x this (the catalog's port block).
SERVICE_PORT_STRIDE = max(s.port_offset or 0 for s in catalog.CATALOG) + 1
#: Replica r of the gateway listens on its card, patient, probe and HTTP ports + r x this.
GATEWAY_PORT_STRIDE = 4


def replica_name(name: str, replica: int) -> str:
    """`records` for the first replica (what a one-replica stack always called it),
    `records-2`, `records-3`... for the others."""
    return name if replica == 0 else f"{name}-{replica + 1}"


def balanced_target(addresses: list[str]) -> str:
    """A gRPC target naming every replica: kit.clients' round_robin spreads over them."""
    if len(addresses) == 1:
        return addresses[0]
    return "ipv4:" + ",".join(addresses)


@dataclass(frozen=True)
class StackConfig:
    var_dir: Path
    base_port: int = 50051
    nats_port: int = 4233
    smtp_port: int = 2525
    #: The gateway's mTLS port (CPS, staff and service cards).
    gateway_port: int = 8443
    #: The gateway's TLS port without client certificate (patient bearer tokens).
    patient_port: int = 8444
    #: The gateway's plaintext grpc.health.v1 port: the launcher's readiness check.
    gateway_probe_port: int = 8445
    #: The gateway's HTTPS port: the HTTP/JSON door and the patient portal (/portail/).
    http_port: int = 8446
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    #: Processes per service and of the gateway (each replica on ports of its own).
    replicas: int = 1
    #: 1: one nats-server (`make run`); 3: a JetStream cluster, streams R3, fsync per write.
    nats_nodes: int = 1
    #: First cluster route port (node i: + i); 0: right after the client ports.
    nats_route_port: int = 0
    #: Run only these (service names, or "gateway"); empty: every service and the gateway.
    only: tuple[str, ...] = ()
    #: Database URL per service; wins over `DMP_DATABASE_URL_<SERVICE>` and the SQLite default.
    database_urls: Mapping[str, str] = field(default_factory=dict)
    #: Extra environment per process name (tests tune timeouts or limits with it).
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.var_dir / "logs"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    @property
    def sms_dir(self) -> Path:
        return self.var_dir / "sms"

    @property
    def pki_dir(self) -> Path:
        return self.var_dir / "pki"

    @property
    def cards_dir(self) -> Path:
        return self.pki_dir / "cards"

    @property
    def nats_client_ports(self) -> list[int]:
        return [self.nats_port + i for i in range(self.nats_nodes)]

    @property
    def nats_route_ports(self) -> list[int]:
        if self.nats_nodes == 1:
            return []
        first = self.nats_route_port or self.nats_port + self.nats_nodes
        return [first + i for i in range(self.nats_nodes)]

    @property
    def nats_url(self) -> str:
        """Every node, comma-separated (kit.nats.server_urls)."""
        return ",".join(f"nats://{HOST}:{port}" for port in self.nats_client_ports)

    @property
    def stream_replicas(self) -> int:
        """R3 on a cluster of three or more nodes (the production setting), else R1."""
        return 3 if self.nats_nodes >= 3 else 1

    def replica_port(self, spec: ServiceSpec, replica: int) -> int:
        return spec.port(self.base_port) + replica * SERVICE_PORT_STRIDE

    def replica_address(self, spec: ServiceSpec, replica: int) -> str:
        return f"{HOST}:{self.replica_port(spec, replica)}"

    def target(self, spec: ServiceSpec) -> str:
        """What callers dial: the one address, or every replica's (round_robin)."""
        return balanced_target([self.replica_address(spec, r) for r in range(self.replicas)])

    def gateway_ports(self, replica: int) -> tuple[int, int, int, int]:
        """(card, patient, probe, HTTP) ports of gateway replica `replica`."""
        shift = replica * GATEWAY_PORT_STRIDE
        return (
            self.gateway_port + shift,
            self.patient_port + shift,
            self.gateway_probe_port + shift,
            self.http_port + shift,
        )


def database_url(spec: ServiceSpec, cfg: StackConfig) -> str:
    """The configured URL, else `DMP_DATABASE_URL_<SERVICE>` (e.g. a local PostgreSQL),
    else a SQLite file in the var directory."""
    configured = cfg.database_urls.get(spec.name)
    if configured:
        return configured
    override = os.environ.get(f"DMP_DATABASE_URL_{spec.name.upper()}")
    if override:
        return override
    return f"sqlite+aiosqlite:///{cfg.var_dir / f'{spec.name}.db'}"


def _service_extras(spec: ServiceSpec, cfg: StackConfig, secrets: DevSecrets) -> dict[str, str]:
    """What only one service needs: identity its signing secrets, notify its dev sinks."""
    if spec.name == "identity":
        return {
            "DMP_OTP_PEPPER": secrets.otp_pepper,
            "DMP_TOKEN_SIGNING_KEY_FILE": str(secrets.token_signing_key_file),
            "DMP_TOKEN_SIGNING_KEY_CREATE": "false",
        }
    if spec.name == "records":
        return secrets.records_env()
    if spec.name == "notify":
        return {
            "DMP_SMTP_HOST": HOST,
            "DMP_SMTP_PORT": str(cfg.smtp_port),
            "DMP_SMTP_USE_TLS": "false",
            "DMP_SMTP_START_TLS": "false",
            "DMP_SMS_PROVIDER": "file",
            "DMP_SMS_SINK_PATH": str(cfg.sms_dir / "outbox.ndjson"),
        }
    return {}


def _common_env(name: str, cfg: StackConfig, secrets: DevSecrets) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DMP_DATABASE_URL", None)
    env.update(
        {
            "DMP_SERVICE_NAME": name,
            "DMP_GRPC_HOST": HOST,
            "DMP_NATS_URL": cfg.nats_url,
            "DMP_NATS_STREAM_REPLICAS": str(cfg.stream_replicas),
            "DMP_TOKEN_PUBLIC_KEY_FILE": str(secrets.token_public_key_file),
            **secrets.principal_env(),
        }
    )
    return env


def service_env(
    spec: ServiceSpec,
    cfg: StackConfig,
    secrets: DevSecrets,
    running: list[ServiceSpec],
    replica: int = 0,
) -> dict[str, str]:
    env = _common_env(spec.name, cfg, secrets)
    env["DMP_GRPC_PORT"] = str(cfg.replica_port(spec, replica))
    if spec.has_migrations():
        env["DMP_DATABASE_URL"] = database_url(spec, cfg)
    for other in running:
        if other.name != spec.name:
            env[f"{other.env_prefix}_TARGET"] = cfg.target(other)
    env.update(_service_extras(spec, cfg, secrets))
    env.update(cfg.extra_env.get(spec.name, {}))
    return env


def gateway_env(cfg: StackConfig, secrets: DevSecrets, replica: int = 0) -> dict[str, str]:
    """The edge: both TLS listeners, the dev PKI, identity's token key, every upstream.

    Every catalog service gets a target, running or not: a call to one that is
    not running answers UNAVAILABLE instead of going to a default address.
    """
    env = _common_env(GATEWAY.name, cfg, secrets)
    card_port, patient_port, probe_port, http_port = cfg.gateway_ports(replica)
    env.update(
        {
            "DMP_GRPC_PORT": str(card_port),
            "DMP_PATIENT_PORT": str(patient_port),
            "DMP_PROBE_PORT": str(probe_port),
            "DMP_GATEWAY_HTTP_PORT": str(http_port),
            "DMP_TLS_CERT_FILE": str(cfg.pki_dir / pki.SERVER_CERT),
            "DMP_TLS_KEY_FILE": str(cfg.pki_dir / pki.SERVER_KEY),
            "DMP_CLIENT_CA_FILE": str(cfg.pki_dir / pki.CA_CERT),
            "DMP_CLIENT_CRL_FILE": str(cfg.pki_dir / pki.CRL),
        }
    )
    env.update(secrets.csrf_env())
    for spec in catalog.CATALOG:
        env[f"{spec.env_prefix}_TARGET"] = cfg.target(spec)
    env.update(cfg.extra_env.get(GATEWAY.name, {}))
    return env


class DevStack:
    """Starts and stops the platform; `launch` leaves nothing running if it fails."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        for name in cfg.only:
            if name == GATEWAY.name:
                continue
            if not catalog.spec(name).exists():
                raise StartupError(f"service {name!r} does not exist in this checkout")
        self.specs = [s for s in catalog.available() if not cfg.only or s.name in cfg.only]
        self.with_gateway = GATEWAY.exists() and (not cfg.only or GATEWAY.name in cfg.only)
        if cfg.replicas < 1 or cfg.nats_nodes < 1:
            raise StartupError("--replicas and --nats-nodes must be at least 1")
        self.nats_cluster = NatsCluster(
            cfg.var_dir,
            cfg.nats_client_ports,
            cfg.nats_route_ports,
            cfg.logs,
            sync_always=cfg.nats_nodes > 1,
        )
        #: The first (or only) node: what a one-node stack's tests kill and restart.
        self.nats = self.nats_cluster.nodes[0]
        self.mail = MailSink(cfg.smtp_port, cfg.mail_dir, keep=False)
        self.processes: list[ServiceProcess] = []
        self.secrets: DevSecrets | None = None
        self.cards: Registration | None = None
        self.pki_created = False

    @property
    def names(self) -> list[str]:
        """Every process this stack runs, in start order (replicas: `records`, `records-2`)."""
        replicas = range(self.cfg.replicas)
        names = [replica_name(s.name, r) for s in self.specs for r in replicas]
        if self.with_gateway:
            names += [replica_name(GATEWAY.name, r) for r in replicas]
        return names

    def _ports(self) -> dict[str, int]:
        cfg = self.cfg
        wanted = {"smtp sink": cfg.smtp_port}
        nodes = self.nats_cluster.nodes
        wanted |= {node.name: node.port for node in nodes}
        wanted |= {
            f"{node.name} routes": port
            for node, port in zip(nodes, cfg.nats_route_ports, strict=False)
        }
        for r in range(cfg.replicas):
            wanted |= {replica_name(s.name, r): cfg.replica_port(s, r) for s in self.specs}
            if self.with_gateway:
                card, patient, probe, http = cfg.gateway_ports(r)
                name = replica_name(GATEWAY.name, r)
                wanted |= {
                    f"{name} card port": card,
                    f"{name} patient port": patient,
                    f"{name} probe port": probe,
                    f"{name} http port": http,
                }
        return wanted

    def _check_ports(self) -> None:
        wanted = self._ports()
        clashes = len(set(wanted.values())) != len(wanted)
        busy = [f"{name} ({port})" for name, port in wanted.items() if port_in_use(port)]
        if busy or clashes:
            problem = f"ports already in use: {', '.join(busy)}" if busy else "ports overlap"
            raise StartupError(
                f"{problem}; is `dmp dev up` already running? Use --base-port / --nats-port / "
                "--smtp-port / --gateway-port / --patient-port / --probe-port / --http-port "
                "to pick others."
            )

    def prepare(self) -> None:
        """Ports, directories, secrets, PKI and migrations: everything before the first process.

        The caller must not interrupt it (a migration stopped half-way is worse than a
        start-up that takes a second longer), so `dmp_dev.cli.dev` defers signals until it returns.
        """
        if not self.specs and not self.with_gateway:
            raise StartupError("no service found (services/<name>/__main__.py)")
        self._check_ports()
        for directory in (self.cfg.var_dir, self.cfg.logs, self.cfg.mail_dir, self.cfg.sms_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets = load_or_create(self.cfg.var_dir / "secrets")
        if self.with_gateway:
            self.pki_created = pki.ensure_dev_pki(self.cfg.pki_dir)
            pki.ensure_dev_establishments(self.cfg.pki_dir)
        for spec in self.specs:
            if not spec.has_migrations():
                continue
            try:
                migrations.upgrade_sync(spec.name, database_url(spec, self.cfg))
            except Exception as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise StartupError(
                    f"{spec.name}: migrations failed: {type(exc).__name__}: {first_line}"
                ) from exc

    def launch(self) -> None:
        """Start NATS, the mail sink and every service; once they are SERVING, register the
        cards and start the gateway."""
        if self.secrets is None:
            raise RuntimeError("prepare() first")
        try:
            self._start_infrastructure()
            for spec in self.specs:
                for replica in range(self.cfg.replicas):
                    name = replica_name(spec.name, replica)
                    process = ServiceProcess(
                        name=name,
                        module=spec.module,
                        target=self.cfg.replica_address(spec, replica),
                        log_file=self.cfg.logs / f"{name}.log",
                        env=service_env(spec, self.cfg, self.secrets, self.specs, replica),
                    )
                    process.start()
                    self.processes.append(process)
            wait_until_serving(self.processes, self.cfg.ready_timeout_s)
            if self.with_gateway:
                self._start_gateway(self.secrets)
        except BaseException:  # including KeyboardInterrupt: leave nothing running
            self.stop()
            raise

    def _start_gateway(self, secrets: DevSecrets) -> None:
        if any(s.name == "identity" for s in self.specs):
            identity = self.cfg.target(catalog.spec("identity"))
            self.cards = register_cards(self.cfg.cards_dir, identity, secrets)
            # After the cards: an establishment's staff may name a card holder's RPPS.
            establishments = register_establishments(
                self.cfg.pki_dir / pki.ESTABLISHMENTS_DIR, identity, secrets
            )
            self.cards.created += establishments.created
            self.cards.present += establishments.present
            self.cards.warnings += establishments.warnings
        gateways = []
        for replica in range(self.cfg.replicas):
            name = replica_name(GATEWAY.name, replica)
            gateway = ServiceProcess(
                name=name,
                module=GATEWAY.module,
                target=f"{HOST}:{self.cfg.gateway_ports(replica)[2]}",
                log_file=self.cfg.logs / f"{name}.log",
                env=gateway_env(self.cfg, secrets, replica),
            )
            gateway.start()
            self.processes.append(gateway)
            gateways.append(gateway)
        wait_until_serving(gateways, self.cfg.ready_timeout_s)

    def _start_infrastructure(self) -> None:
        nats_log = self.nats.log_file or self.cfg.logs / "nats.log"
        try:
            self.nats_cluster.start()
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise StartupError(
                f"nats-server: {exc}; last lines of {nats_log}:\n{log_tail(nats_log)}"
            ) from exc
        try:
            self.mail.start()
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"mail sink on port {self.cfg.smtp_port}: {exc}") from exc

    def dead(self) -> ServiceProcess | None:
        """A process that exited on its own while the stack was up, if any."""
        return next((p for p in self.processes if p.exited() is not None), None)

    def process(self, name: str) -> ServiceProcess:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(f"{name!r} is not running in this stack; running: {self.names}")

    def stop_one(self, name: str, *, kill: bool = False) -> None:
        """Stop one process (SIGTERM, or SIGKILL with `kill`) and keep it in the stack for
        `start_one`: fault tests take one service away and bring it back."""
        process = self.process(name)
        if kill:
            process.kill()
        else:
            process.terminate()
        process.wait_stopped(self.cfg.stop_timeout_s)

    def start_one(self, name: str) -> None:
        """Start a stopped process again with the same environment; wait until SERVING."""
        process = self.process(name)
        if process.exited() is None:
            raise RuntimeError(f"{name} is still running")
        process.start()
        wait_until_serving([process], self.cfg.ready_timeout_s)

    def stop_nats_node(self, name: str, *, kill: bool = False) -> None:
        """Take one NATS node away (`nats`, or `nats-2` of a cluster): SIGKILL with `kill`."""
        node = self.nats_cluster.node(name)
        if kill:
            node.kill()
        else:
            node.stop(self.cfg.stop_timeout_s)

    def start_nats_node(self, name: str) -> None:
        """Start a stopped node again on the same ports and store (it rejoins the cluster)."""
        node = self.nats_cluster.node(name)
        if node.running():
            raise RuntimeError(f"{name} is still running")
        node.start()

    def stop(self) -> list[str]:
        """Stop everything in reverse start order; returns the processes that had to be killed."""
        killed = stop_all(self.processes, self.cfg.stop_timeout_s)
        self.processes.clear()
        self.mail.stop()
        self.nats_cluster.stop(self.cfg.stop_timeout_s)
        return killed
