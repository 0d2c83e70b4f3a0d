"""`dmp migrate up|down SERVICE`: apply or revert one service's Alembic migrations.

The only way a schema changes: services never migrate themselves (a service whose
database is not at its code's head refuses to start), so migrations run once per
rollout — this command as a Kubernetes Job per service, and as the launcher's first
step (`dmp dev up` calls the same `kit.migrations.upgrade_sync`). Two runners on one
database take turns on a lock (PostgreSQL advisory lock, SQLite file lock): the second
waits, then finds nothing left to do.
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

#: `dmp migrate up all`: every service that has migrations, in the catalog's order.
ALL = "all"

_URL_HELP = (
    "SQLAlchemy async URL; default DMP_DATABASE_URL_<SERVICE>, then DMP_DATABASE_URL "
    "(never printed: it may carry a password)."
)


def _migrated(service: str) -> list[str]:
    """The services `service` names: itself, or every migrated one for `all`."""
    if service == ALL:
        return [spec.name for spec in catalog.available() if spec.has_migrations()]
    try:
        spec = catalog.spec(service)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="SERVICE") from exc
    if not spec.has_migrations():
        raise typer.BadParameter(f"{service} has no migrations", param_hint="SERVICE")
    return [service]


def _url(service: str, database_url: str | None) -> str:
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
    service: Annotated[str, typer.Argument(help="Service, e.g. identity, or `all`.")],
    revision: Annotated[str, typer.Option(help="Target revision (one service only).")] = "head",
    database_url: Annotated[str | None, typer.Option(help=_URL_HELP)] = None,
) -> None:
    """Upgrade SERVICE's schema to REVISION (default: the latest), under the migration lock."""
    names = _migrated(service)
    if service == ALL and revision != "head":
        raise typer.BadParameter("`all` upgrades to head only", param_hint="--revision")
    # Every URL before the first migration: a missing one fails before anything changed.
    urls = {name: _url(name, database_url) for name in names}
    for name, url in urls.items():
        migrations.upgrade_sync(name, url, revision)
        console.print(f"{name}: upgraded to {revision}")


@app.command()
def down(
    service: Annotated[str, typer.Argument(help="Service, e.g. identity.")],
    revision: Annotated[
        str, typer.Option(help="Target revision: -1 = one step back, base = empty.")
    ] = "-1",
    database_url: Annotated[str | None, typer.Option(help=_URL_HELP)] = None,
) -> None:
    """Downgrade SERVICE's schema to REVISION (default: one step back), under the lock."""
    if service == ALL:
        raise typer.BadParameter("down takes one service at a time", param_hint="SERVICE")
    (name,) = _migrated(service)
    migrations.downgrade_sync(name, _url(name, database_url), revision)
    console.print(f"{name}: downgraded to {revision}")
