"""`dmp records ...`: operator commands of the records service.

`purge` deletes the records closed longer ago than the retention period (10
years) and reports what it purged; `rotate-keys` re-wraps every record's data
key with the current key-encryption key. Both read `DMP_*` settings (database
URL, KEKs) like the service does.
"""

from __future__ import annotations

import asyncio

import typer

from kit.db import create_engine, session_factory, utcnow
from services.records.operations import purge_expired, rotate_keys
from services.records.settings import RecordsSettings

app = typer.Typer(no_args_is_help=True, help="Records service: retention purge, key rotation.")


async def _purge(dry_run: bool, limit: int) -> list[tuple[str, str, int]]:
    settings = RecordsSettings()
    engine = create_engine(settings.database_url)
    try:
        purged = await purge_expired(
            session_factory(engine), settings, utcnow(), dry_run=dry_run, limit=limit
        )
    finally:
        await engine.dispose()
    return [(p.dossier, p.close_time.date().isoformat(), p.documents) for p in purged]


async def _rotate() -> int:
    settings = RecordsSettings()
    engine = create_engine(settings.database_url)
    try:
        return await rotate_keys(session_factory(engine), settings)
    finally:
        await engine.dispose()


@app.command()
def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; delete nothing."),
    limit: int = typer.Option(1000, min=1, help="At most this many records per run."),
) -> None:
    """Purge records closed more than the retention period ago; print what was purged."""
    rows = asyncio.run(_purge(dry_run, limit))
    verb = "would purge" if dry_run else "purged"
    for dossier, closed, count in rows:
        typer.echo(f"{verb} {dossier} closed {closed} documents {count}")
    typer.echo(f"{verb} {len(rows)} record(s), {sum(r[2] for r in rows)} document(s)")


@app.command("rotate-keys")
def rotate_keys_command() -> None:
    """Re-wrap data keys not wrapped by the current KEK (DMP_RECORDS_KEK_ID)."""
    typer.echo(f"re-wrapped {asyncio.run(_rotate())} data key(s)")
