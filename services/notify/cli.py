"""`dmp notify dlq list|replay`: inspect and replay notify's dead letters.

Talks to NATS directly (`DMP_NATS_URL`); prints ids, subjects and error codes
only (dead letters carry identifiers, never contact data or medical content).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from kit import nats as kit_nats
from kit.settings import ServiceSettings
from services.notify import deadletters

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="Notifications: dead letters.")
dlq = typer.Typer(no_args_is_help=True, help="Dead-letter subject of notify.")
app.add_typer(dlq, name="dlq")

KindOption = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="document_added, dossier_lifecycle, access_recorded or access_rules_changed.",
    ),
]


async def _with_js(work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    nc = await kit_nats.connect(ServiceSettings().nats_url, "cli")
    try:
        return await work(nc.jetstream())
    finally:
        await nc.drain()


@dlq.command("list")
def list_command(kind: KindOption = None, limit: int = typer.Option(100, min=1)) -> None:
    """List outstanding dead letters, oldest first."""
    letters = asyncio.run(_with_js(lambda js: deadletters.list_dead(js, kind=kind, limit=limit)))
    table = Table("seq", "dead letter", "original subject", "event id", "reason", "error", "time")
    for d in letters:
        table.add_row(
            str(d.seq),
            d.subject.removeprefix(deadletters.DEADLETTER_PREFIX),
            d.original_subject,
            d.event_id,
            d.reason,
            d.error,
            d.time.isoformat(timespec="seconds") if d.time else "",
        )
    Console().print(table)
    typer.echo(f"{len(letters)} dead letter(s)")


@dlq.command("replay")
def replay_command(
    seq: Annotated[list[int] | None, typer.Option("--seq", help="Sequence(s) to replay.")] = None,
    kind: KindOption = None,
    all_: bool = typer.Option(False, "--all", help="Replay every outstanding dead letter."),
) -> None:
    """Send dead letters through notify again (then remove them from the list)."""
    if not seq and not all_ and not kind:
        raise typer.BadParameter("give --seq, --kind or --all")

    async def work(js: JetStreamContext) -> int:
        letters = await deadletters.list_dead(js, kind=kind, limit=100_000)
        wanted = set(seq or [])
        done = 0
        for letter in letters:
            if wanted and letter.seq not in wanted:
                continue
            await deadletters.replay(js, letter)
            done += 1
        return done

    typer.echo(f"{asyncio.run(_with_js(work))} dead letter(s) replayed")
