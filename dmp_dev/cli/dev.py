"""`dmp dev up`: the whole platform locally, with no PostgreSQL or NATS installed (`make run`)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dmp_dev.launcher.processes import StartupError, log_tail
from dmp_dev.launcher.stack import DevStack, StackConfig

app = typer.Typer(no_args_is_help=True, help="Run the platform on this machine.")
# Piped output (tests, CI logs) gets a wide table instead of rich's 80-column default.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _table(stack: DevStack) -> Table:
    table = Table(title="DMP platform (dev)")
    table.add_column("component")
    table.add_column("endpoint")
    table.add_column("pid", justify="right")
    table.add_column("log / data")
    cfg = stack.cfg
    gateways = 0
    for process in stack.processes:
        if not process.name.startswith("gateway"):
            table.add_row(process.name, process.target, str(process.pid), str(process.log_file))
            continue
        card, patient, _, http = cfg.gateway_ports(gateways)
        gateways += 1
        label = process.name
        pid, log = str(process.pid), str(process.log_file)
        table.add_row(f"{label}: cards (mTLS)", f"localhost:{card}", pid, log)
        table.add_row(f"{label}: patients (TLS)", f"localhost:{patient}", "", "")
        table.add_row(f"{label}: health probe", process.target, "", "")
        web = f"https://localhost:{http}"
        table.add_row(f"{label}: JSON door (HTTPS)", f"{web}/v1/", "", "")
        table.add_row(f"{label}: patient portal", f"{web}/portail/", "", "")
    for node in stack.nats_cluster.nodes:
        nats_pid = str(node.proc.pid) if node.proc else ""
        label = "nats (JetStream)" if node.name == "nats" else f"{node.name} (JetStream, R3)"
        table.add_row(label, node.url, nats_pid, str(node.store_dir))
    table.add_row("smtp sink", f"127.0.0.1:{stack.cfg.smtp_port}", "", str(stack.cfg.mail_dir))
    table.add_row("sms sink", "", "", str(stack.cfg.sms_dir))
    return table


class _Signals:
    """SIGINT/SIGTERM: ask to stop; while processes are launching, also unwind the launch.

    During migrations a signal only sets the flag, so a migration never stops half-way.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.launching = threading.Event()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()
        if self.launching.is_set():
            raise KeyboardInterrupt


def _connect_help(stack: DevStack) -> None:
    """Where a client connects, and what it needs (the CA, a card, or a patient token)."""
    if not stack.with_gateway:
        return
    cfg = stack.cfg
    console.print(
        f"Connect through the gateway: cards on [bold]localhost:{cfg.gateway_port}[/bold] "
        f"(mTLS), patients on [bold]localhost:{cfg.patient_port}[/bold] (TLS + bearer token)\n"
        f"  CA (trust it as the server's root): {cfg.pki_dir / 'ca.crt'}\n"
        f"  cards (client certificate + key):   {cfg.cards_dir}/<card>.crt|.key\n"
        f"  JSON door: https://localhost:{cfg.http_port}/v1/ (OpenAPI at /v1/openapi.json), "
        f"patient portal: https://localhost:{cfg.http_port}/portail/"
    )
    if stack.pki_created:
        console.print(f"  (dev PKI created in {cfg.pki_dir})")
    if stack.cards is not None:
        registered = len(stack.cards.created) + len(stack.cards.present)
        console.print(f"  cards registered with identity: {registered}")
        for warning in stack.cards.warnings:
            console.print(f"  [yellow]{warning}[/yellow]")


def _start(stack: DevStack, signals: _Signals) -> None:
    """Prepare then launch; exits 1 on a start-up failure, 0 if interrupted."""
    try:
        stack.prepare()
        if signals.stopping.is_set():
            raise KeyboardInterrupt
        signals.launching.set()
        stack.launch()
        signals.launching.clear()
    except StartupError as exc:
        console.print(f"[red]start-up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        signals.launching.clear()
        stack.stop()  # idempotent; covers a signal landing just as launch() returned
        console.print("interrupted during start-up; stopped")
        raise typer.Exit(0) from None


def _supervise(stack: DevStack, signals: _Signals) -> int:
    """Until a signal: 0. If a service dies on its own: its log tail, then 1."""
    while not signals.stopping.wait(0.5):
        dead = stack.dead()
        if dead is not None:
            console.print(
                f"[red]{dead.name} exited with code {dead.exited()}[/red]; "
                f"last lines of {dead.log_file}:\n{log_tail(dead.log_file)}"
            )
            return 1
    return 0


@app.command()
def up(  # noqa: PLR0917 - typer maps each parameter to an option
    var_dir: Annotated[
        Path,
        typer.Option(envvar="DMP_VAR_DIR", help="Data directory (SQLite, NATS, secrets, logs)."),
    ] = Path("var"),
    base_port: Annotated[
        int,
        typer.Option(
            envvar="DMP_DEV_BASE_PORT",
            help="gRPC port of identity; records, consent, notify, history_feed follow (+1..+4).",
        ),
    ] = 50051,
    nats_port: Annotated[
        int, typer.Option(envvar="DMP_DEV_NATS_PORT", help="nats-server port.")
    ] = 4233,
    smtp_port: Annotated[
        int, typer.Option(envvar="DMP_DEV_SMTP_PORT", help="Dev mail sink port.")
    ] = 2525,
    gateway_port: Annotated[
        int,
        typer.Option(envvar="DMP_DEV_GATEWAY_PORT", help="Gateway card port (mTLS)."),
    ] = 8443,
    patient_port: Annotated[
        int,
        typer.Option(envvar="DMP_DEV_PATIENT_PORT", help="Gateway patient port (TLS, tokens)."),
    ] = 8444,
    probe_port: Annotated[
        int,
        typer.Option(
            envvar="DMP_DEV_PROBE_PORT", help="Gateway plaintext health port (readiness)."
        ),
    ] = 8445,
    http_port: Annotated[
        int,
        typer.Option(
            envvar="DMP_DEV_HTTP_PORT", help="Gateway HTTPS port: JSON door and patient portal."
        ),
    ] = 8446,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="Run only this service, or `gateway` (repeatable)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every service to serve.")
    ] = 60.0,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes per service and of the gateway (replica r: ports + 5r, gateway "
            "+ 4r). Several replicas need PostgreSQL (DMP_DATABASE_URL_<SERVICE>).",
        ),
    ] = 1,
    nats_nodes: Annotated[
        int,
        typer.Option(
            min=1,
            help="nats-server nodes: 3 runs a JetStream cluster (client ports from --nats-port, "
            "route ports after them; streams R3, fsync before each ack).",
        ),
    ] = 1,
) -> None:
    """Start NATS, a mail sink, every service and the gateway; stop them all on Ctrl-C or
    SIGTERM."""
    cfg = StackConfig(
        var_dir=var_dir.resolve(),
        base_port=base_port,
        nats_port=nats_port,
        smtp_port=smtp_port,
        gateway_port=gateway_port,
        patient_port=patient_port,
        gateway_probe_port=probe_port,
        http_port=http_port,
        ready_timeout_s=timeout,
        only=tuple(service or ()),
        replicas=replicas,
        nats_nodes=nats_nodes,
    )
    signals = _Signals()
    try:
        stack = DevStack(cfg)
    except (StartupError, KeyError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    started = time.monotonic()
    console.print(f"Starting {', '.join(stack.names)} (data in {cfg.var_dir})")
    _start(stack, signals)
    console.print(_table(stack))
    _connect_help(stack)
    console.print(f"ready in {time.monotonic() - started:.2f}s; Ctrl-C stops everything")
    console.print("DMP platform ready")
    console.file.flush()

    exit_code = _supervise(stack, signals)
    console.print("stopping…")
    killed = stack.stop()
    if killed:
        names = ", ".join(killed)
        console.print(f"[yellow]killed after {cfg.stop_timeout_s:.0f}s:[/yellow] {names}")
    console.print("stopped")
    raise typer.Exit(exit_code)
