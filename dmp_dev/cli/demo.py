"""`dmp demo`: the scripted patient / professional journey against a running platform.

Every call goes through the gateway (cards on the card port, the patient's
token on the patient port), so what is shown is what a vendor's client gets.
Exits 1 with the failing step when an outcome is not the expected one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dmp_dev.demo.connect import DemoError, Endpoints
from dmp_dev.demo.journey import Journey
from dmp_dev.demo.steps import Runner, StepResult

app = typer.Typer(help="A scripted journey through the gateway of a running platform.")
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _print_step(result: StepResult) -> None:
    mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
    console.print(
        f"{mark} [bold]{result.number:2d}[/bold] [cyan]{result.actor}[/cyan] → "
        f"{result.call}\n      {result.outcome}"
        + ("" if result.ok else f"  [red](expected {result.expected})[/red]")
    )


def _note(text: str) -> None:
    console.print(f"   [dim italic]{text}[/dim italic]")


def _summary(results: list[StepResult]) -> Table:
    table = Table(title="DMP demo journey")
    for column in ("#", "actor", "call", "expected", "outcome"):
        table.add_column(column, overflow="fold")
    for r in results:
        colour = "green" if r.ok else "red"
        table.add_row(
            str(r.number), r.actor, r.call, r.expected, f"[{colour}]{r.outcome}[/{colour}]"
        )
    return table


@app.callback(invoke_without_command=True)
def demo(  # noqa: PLR0917 - typer maps each parameter to an option
    var_dir: Annotated[
        Path,
        typer.Option(envvar="DMP_VAR_DIR", help="The platform's data dir (pki/, sms/, mail/)."),
    ] = Path("var"),
    host: Annotated[str, typer.Option(help="Gateway host (must match its certificate).")] = (
        "localhost"
    ),
    card_port: Annotated[
        int, typer.Option(envvar="DMP_GRPC_PORT", help="Gateway mTLS port (cards).")
    ] = 8443,
    patient_port: Annotated[
        int, typer.Option(envvar="DMP_PATIENT_PORT", help="Gateway TLS port (patients).")
    ] = 8444,
    wait: Annotated[
        float, typer.Option(help="Longest wait for an event-driven effect, in seconds.")
    ] = 30.0,
    report: Annotated[
        Path | None, typer.Option(help="Also write every step's outcome to this JSON file.")
    ] = None,
) -> None:
    """Sign-up, login with a one-time code, grants, upload, notification, matrix refusals,
    a block and a Centre 15 emergency read, each step checked."""
    endpoints = Endpoints(var_dir.resolve(), host, card_port, patient_port, wait)
    runner = Runner(_print_step, wait)
    console.print(
        f"DMP demo through the gateway {host}:{card_port} (cards) / {host}:{patient_port} "
        f"(patients), data dir {endpoints.var_dir}"
    )
    failure = ""
    try:
        Journey(endpoints, runner, _note).play()
    except DemoError as exc:
        failure = str(exc)
    if report is not None:
        payload = {"ok": not failure, "error": failure, "steps": []} | {
            "steps": [dataclasses.asdict(r) for r in runner.results]
        }
        report.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", "utf-8")
    if runner.results:
        console.print(_summary(runner.results))
    if failure:
        console.print(f"[red]demo failed:[/red] {failure}")
        raise typer.Exit(1)
    console.print(f"[green]demo passed:[/green] {len(runner.results)} steps as expected")
