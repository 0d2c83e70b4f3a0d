"""`dmp migrate up|down SERVICE`: apply or revert one service's Alembic migrations.

Services migrate themselves at start-up; operators use this to migrate ahead
of a rollout or to step back before a rollback.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from dmp_cli import catalog
from kit import migrations

app = typer.Typer(no_args_is_help=True, help="Apply or revert a service's database migrations.")
console = Console(highlight=False)

_URL_HELP = (
    "SQLAlchemy async URL; default DMP_DATABASE_URL_<SERVICE>, then DMP_DATABASE_URL "
    "(never printed: it may carry a password)."
)


def _resolve(service: str, database_url: str | None) -> str:
    try:
        spec = catalog.spec(service)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="SERVICE") from exc
    if not spec.has_migrations():
        raise typer.BadParameter(f"{service} has no migrations", param_hint="SERVICE")
    url = (
        database_url
        or os.environ.get(f"DMP_DATABASE_URL_{service.upper()}")
        or os.environ.get("DMP_DATABASE_URL")
    )
    if not url:
        raise typer.BadParameter(
            f"no database: pass --database-url or set DMP_DATABASE_URL_{service.upper()}"
        )
    return url


@app.command()
def up(
    service: Annotated[str, typer.Argument(help="Service, e.g. identity.")],
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    database_url: Annotated[str | None, typer.Option(help=_URL_HELP)] = None,
) -> None:
    """Upgrade SERVICE's schema to REVISION (default: the latest)."""
    migrations.upgrade_sync(service, _resolve(service, database_url), revision)
    console.print(f"{service}: upgraded to {revision}")


@app.command()
def down(
    service: Annotated[str, typer.Argument(help="Service, e.g. identity.")],
    revision: Annotated[
        str, typer.Option(help="Target revision: -1 = one step back, base = empty.")
    ] = "-1",
    database_url: Annotated[str | None, typer.Option(help=_URL_HELP)] = None,
) -> None:
    """Downgrade SERVICE's schema to REVISION (default: one step back)."""
    migrations.downgrade_sync(service, _resolve(service, database_url), revision)
    console.print(f"{service}: downgraded to {revision}")
