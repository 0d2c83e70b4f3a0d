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
from kit.devstack.processes import ServiceProcess, StartupError, stop_all, wait_until_serving
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
        }
    if spec.name == "notify":
        return {
            "DMP_SMTP_HOST": HOST,
            "DMP_SMTP_PORT": str(cfg.smtp_port),
            "DMP_SMS_SINK_DIR": str(cfg.sms_dir),
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
    """Starts and stops the platform; `start` leaves nothing running if it fails."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.specs = catalog.available()
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
        """Directories, secrets and migrations: everything that needs no running process."""
        if not self.specs:
            raise StartupError("no service found (services/<name>/__main__.py)")
        for directory in (self.cfg.var_dir, self.cfg.logs, self.cfg.mail_dir, self.cfg.sms_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets = load_or_create(self.cfg.var_dir / "secrets")
        for spec in self.specs:
            if spec.has_migrations():
                migrations.upgrade_sync(spec.name, database_url(spec, self.cfg.var_dir))

    def start(self) -> None:
        self._check_ports()
        self.prepare()
        assert self.secrets is not None
        try:
            self.nats.start()
            self.mail.start()
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
        except BaseException:
            self.stop()
            raise

    def dead(self) -> ServiceProcess | None:
        """A service that exited on its own while the stack was up, if any."""
        return next((p for p in self.processes if p.exited() is not None), None)

    def stop(self) -> None:
        stop_all(self.processes, self.cfg.stop_timeout_s)
        self.processes.clear()
        self.mail.stop()
        self.nats.stop(self.cfg.stop_timeout_s)
