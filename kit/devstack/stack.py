"""The whole platform on one machine: NATS, a mail sink, migrated SQLite files, every service.

`DevStack` only knows about files and processes; `kit.cli.dev` adds the
command line, the signals and the printed table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kit import migrations
from kit.devstack import catalog
from kit.devstack.catalog import ServiceSpec
from kit.devstack.mailsink import MailSink
from kit.devstack.nats_server import NatsServer, port_in_use
from kit.devstack.processes import (
    ServiceProcess,
    StartupError,
    log_tail,
    stop_all,
    wait_until_serving,
)
from kit.devstack.secrets import DevSecrets, load_or_create

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StackConfig:
    var_dir: Path
    base_port: int = 50051
    nats_port: int = 4233
    smtp_port: int = 2525
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    #: Run only these services (empty: every service that exists).
    only: tuple[str, ...] = ()

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
    def nats_url(self) -> str:
        return f"nats://{HOST}:{self.nats_port}"


def database_url(spec: ServiceSpec, var_dir: Path) -> str:
    """`DMP_DATABASE_URL_<SERVICE>` if set (e.g. a local PostgreSQL), else a SQLite file."""
    override = os.environ.get(f"DMP_DATABASE_URL_{spec.name.upper()}")
    if override:
        return override
    return f"sqlite+aiosqlite:///{var_dir / f'{spec.name}.db'}"


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


def service_env(
    spec: ServiceSpec, cfg: StackConfig, secrets: DevSecrets, running: list[ServiceSpec]
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DMP_SERVICE_NAME": spec.name,
            "DMP_GRPC_HOST": HOST,
            "DMP_GRPC_PORT": str(spec.port(cfg.base_port)),
            "DMP_NATS_URL": cfg.nats_url,
            "DMP_TOKEN_PUBLIC_KEY_FILE": str(secrets.token_public_key_file),
            **secrets.principal_env(),
        }
    )
    env.pop("DMP_DATABASE_URL", None)
    if spec.has_migrations():
        env["DMP_DATABASE_URL"] = database_url(spec, cfg.var_dir)
    for other in running:
        if other.name != spec.name:
            env[f"{other.env_prefix}_TARGET"] = f"{HOST}:{other.port(cfg.base_port)}"
    env.update(_service_extras(spec, cfg, secrets))
    return env


class DevStack:
    """Starts and stops the platform; `launch` leaves nothing running if it fails."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        for name in cfg.only:
            if not catalog.spec(name).exists():
                raise StartupError(f"service {name!r} does not exist in this checkout")
        self.specs = [s for s in catalog.available() if not cfg.only or s.name in cfg.only]
        self.nats = NatsServer(cfg.var_dir / "nats", cfg.nats_port, cfg.logs / "nats.log")
        self.mail = MailSink(cfg.mail_dir, cfg.smtp_port)
        self.processes: list[ServiceProcess] = []
        self.secrets: DevSecrets | None = None

    def _check_ports(self) -> None:
        wanted = {"nats": self.cfg.nats_port, "smtp sink": self.cfg.smtp_port}
        wanted |= {s.name: s.port(self.cfg.base_port) for s in self.specs}
        busy = [f"{name} ({port})" for name, port in wanted.items() if port_in_use(port)]
        if busy:
            raise StartupError(
                f"ports already in use: {', '.join(busy)}; is `dmp dev up` already running? "
                "Use --base-port / --nats-port / --smtp-port to pick others."
            )

    def prepare(self) -> None:
        """Ports, directories, secrets and migrations: everything before the first process.

        The caller must not interrupt it (a migration stopped half-way is worse than a
        start-up that takes a second longer), so `kit.cli.dev` defers signals until it returns.
        """
        if not self.specs:
            raise StartupError("no service found (services/<name>/__main__.py)")
        self._check_ports()
        for directory in (self.cfg.var_dir, self.cfg.logs, self.cfg.mail_dir, self.cfg.sms_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets = load_or_create(self.cfg.var_dir / "secrets")
        for spec in self.specs:
            if not spec.has_migrations():
                continue
            try:
                migrations.upgrade_sync(spec.name, database_url(spec, self.cfg.var_dir))
            except Exception as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise StartupError(
                    f"{spec.name}: migrations failed: {type(exc).__name__}: {first_line}"
                ) from exc

    def launch(self) -> None:
        """Start NATS, the mail sink and every service; wait until all are SERVING."""
        if self.secrets is None:
            raise RuntimeError("prepare() first")
        try:
            self._start_infrastructure()
            for spec in self.specs:
                process = ServiceProcess(
                    name=spec.name,
                    module=spec.module,
                    target=f"{HOST}:{spec.port(self.cfg.base_port)}",
                    log_file=self.cfg.logs / f"{spec.name}.log",
                    env=service_env(spec, self.cfg, self.secrets, self.specs),
                )
                process.start()
                self.processes.append(process)
            wait_until_serving(self.processes, self.cfg.ready_timeout_s)
        except BaseException:  # including KeyboardInterrupt: leave nothing running
            self.stop()
            raise

    def _start_infrastructure(self) -> None:
        nats_log = self.cfg.logs / "nats.log"
        try:
            self.nats.start()
        except (RuntimeError, TimeoutError) as exc:
            raise StartupError(
                f"nats-server: {exc}; last lines of {nats_log}:\n{log_tail(nats_log)}"
            ) from exc
        try:
            self.mail.start()
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"mail sink on port {self.cfg.smtp_port}: {exc}") from exc

    def dead(self) -> ServiceProcess | None:
        """A service that exited on its own while the stack was up, if any."""
        return next((p for p in self.processes if p.exited() is not None), None)

    def stop(self) -> list[str]:
        """Stop everything; returns the services that had to be killed."""
        killed = stop_all(self.processes, self.cfg.stop_timeout_s)
        self.processes.clear()
        self.mail.stop()
        self.nats.stop(self.cfg.stop_timeout_s)
        return killed
