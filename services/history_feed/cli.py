"""`dmp history ...`: feed and fake the AMO care history.

`import FILE` streams an NDJSON or CSV file of claim lines to IngestClaims
(as the AMO feeder, signing its principal with the platform's principal key
like a gateway would: development and operator use), with a progress bar and
a summary of accepted, duplicate and rejected lines. `generate` writes
realistic synthetic lines.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import grpc
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
    track,
)
from rich.table import Table

from dmp.authz.v1 import principal_pb2
from dmp.history.v1 import history_pb2, history_pb2_grpc
from kit.errors import error_info
from kit.principal import metadata_for
from kit.settings import ServiceSettings
from services.history_feed.linefile import LineFileError, format_of, read_lines, write_lines
from services.history_feed.synthetic import Generator

app = typer.Typer(no_args_is_help=True, help="AMO care history: import and generate claim lines.")

METHOD = "/dmp.history.v1.HistoryFeedService/IngestClaims"


async def _import(path: Path, fmt: str, target: str, batch: int) -> tuple[object, int]:
    settings = ServiceSettings()
    keys = settings.principal_key_bytes()
    feeder = principal_pb2.Principal(
        kind=principal_pb2.PRINCIPAL_KIND_SERVICE, subject="dmp-cli", roles=["alimentation_amo"]
    )
    meta = metadata_for(feeder, METHOD, settings.principal_key_id, keys[settings.principal_key_id])
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    sent = 0
    read = 0

    def texts(raw: BinaryIO) -> Iterator[str]:
        nonlocal read
        for chunk in raw:
            read += len(chunk)
            yield chunk.decode("utf-8")

    with (
        path.open("rb") as handle,
        Progress(
            TextColumn("[bold]importing"),
            BarColumn(),
            TaskProgressColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[lines]} lines"),
        ) as progress,
    ):
        task = progress.add_task("import", total=size, lines=0)

        async def requests() -> AsyncIterator[history_pb2.IngestClaimsRequest]:
            nonlocal sent
            pending: list[history_pb2.ClaimLine] = []
            for line in read_lines(texts(handle), fmt):
                pending.append(line)
                if len(pending) >= batch:
                    sent += len(pending)
                    yield history_pb2.IngestClaimsRequest(
                        lines=pending, request_id=uuid.uuid4().hex
                    )
                    pending = []
                    progress.update(task, completed=read, lines=sent)
            if pending:
                sent += len(pending)
                yield history_pb2.IngestClaimsRequest(lines=pending, request_id=uuid.uuid4().hex)
            progress.update(task, completed=size, lines=sent)

        async with grpc.aio.insecure_channel(target) as channel:
            stub = history_pb2_grpc.HistoryFeedServiceStub(channel)
            response = await stub.IngestClaims(requests(), metadata=meta)
    return response, sent


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="NDJSON or CSV file.")],
    fmt: str = typer.Option("", "--format", help="ndjson or csv (default: from the extension)."),
    target: str = typer.Option(
        os.environ.get("DMP_HISTORY_FEED_TARGET", "127.0.0.1:50055"),
        help="history_feed address (DMP_HISTORY_FEED_TARGET).",
    ),
    batch: int = typer.Option(1000, min=1, max=10_000, help="Lines per stream message."),
) -> None:
    """Stream FILE to IngestClaims and print a summary."""
    console = Console()
    try:
        response, sent = asyncio.run(_import(file, format_of(str(file), fmt), target, batch))
    except LineFileError as exc:
        console.print(f"[red]cannot read {file}: {exc}[/red]")
        raise typer.Exit(2) from None
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        reason = info.reason if info else exc.code().name
        console.print(f"[red]import refused: {exc.code().name} {reason}: {exc.details()}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"{file.name}: {sent} lines sent")
    table.add_column("result")
    table.add_column("lines", justify="right")
    table.add_row("accepted", str(response.accepted_count))  # type: ignore[attr-defined]
    table.add_row("duplicate", str(response.duplicate_count))  # type: ignore[attr-defined]
    table.add_row("rejected", str(response.rejected_count))  # type: ignore[attr-defined]
    console.print(table)
    reasons = Counter(r.reason for r in response.rejections)  # type: ignore[attr-defined]
    for reason, count in reasons.most_common():
        console.print(f"  {reason}: {count}")
    for rejection in list(response.rejections)[:10]:  # type: ignore[attr-defined]
        console.print(
            f"  line {rejection.line_id or '?'} (batch {rejection.batch_index}, "
            f"#{rejection.line_index}): {rejection.reason}: {rejection.detail}"
        )
    console.print(f"ingest id {response.ingest_id}")  # type: ignore[attr-defined]


@app.command()
def generate(  # noqa: PLR0917 - typer options
    output: Annotated[
        Path, typer.Argument(dir_okay=False, help="File to write (.ndjson or .csv).")
    ],
    count: int = typer.Option(10_000, min=1, max=50_000_000, help="Number of lines."),
    patients: int = typer.Option(1_000, min=1, help="Number of insured people."),
    months: int = typer.Option(30, min=1, max=120, help="Spread of care dates, in months."),
    seed: int = typer.Option(0, help="Random seed (same seed, same lines)."),
    prefix: str = typer.Option("SYN", help="Line id prefix."),
    fmt: str = typer.Option("", "--format", help="ndjson or csv (default: from the extension)."),
) -> None:
    """Write realistic synthetic claim lines (valid INS and code shapes)."""
    generator = Generator(seed=seed, patients=patients, months=months, prefix=prefix)
    with output.open("w", encoding="utf-8", newline="") as handle:
        lines = track(generator.lines(count), total=count, description="generating")
        written = write_lines(handle, lines, format_of(str(output), fmt))
    typer.echo(f"wrote {written} lines for {patients} patients to {output}")
