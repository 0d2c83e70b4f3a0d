"""`dmp`: developer and operator commands of the platform.

Each service's own commands (`services/<name>/cli.py`) are mounted under the
service's command name. The development commands (`dev up`, `demo`, `pki`) come
from `dmp_dev`, which the production image does not ship: they are mounted by
name only when that package can be imported, so this module never depends on it.
"""

from __future__ import annotations

import importlib

import typer

from dmp_cli import catalog, migrate
from services.consent import cli as consent_cli
from services.history_feed import cli as history_cli
from services.notify import cli as notify_cli
from services.records import cli as records_cli

app = typer.Typer(no_args_is_help=True, help="DMP platform: run, operate and try the platform.")

# Services runnable with `dmp serve NAME` (the launcher's catalog); each __main__ exposes main().
SERVICES = {spec.name: f"{spec.module}.__main__" for spec in catalog.CATALOG}

#: The package holding the development commands; absent from the production image.
DEV_COMMANDS = "dmp_dev.cli"


@app.callback()
def main() -> None:
    """DMP platform: run, operate and try the platform."""


@app.command()
def serve(service: str = typer.Argument(..., help="Service to run, e.g. identity.")) -> None:
    """Run one service in the foreground (configuration from DMP_* variables)."""
    module = SERVICES.get(service)
    if module is None:
        raise typer.BadParameter(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    # By name: `dmp serve records` loads the records service only, not all five.
    importlib.import_module(module).main()


def _dev_commands() -> dict[str, typer.Typer]:
    """`dev`, `pki` and `demo` when dmp_dev is installed (a checkout, not the image)."""
    try:
        dev = importlib.import_module(DEV_COMMANDS)
    except ModuleNotFoundError as exc:
        if exc.name not in {"dmp_dev", DEV_COMMANDS}:
            raise
        return {}
    commands: dict[str, typer.Typer] = dev.COMMANDS
    return commands


def _mount() -> None:
    dev = _dev_commands()
    # The order of `dmp --help`, unchanged since the CLI lived in one package.
    for name, sub_app in (
        ("dev", dev.get("dev")),
        ("migrate", migrate.app),
        ("records", records_cli.app),
        ("history", history_cli.app),
        ("policy", consent_cli.app),
        ("notify", notify_cli.app),
        ("pki", dev.get("pki")),
        ("demo", dev.get("demo")),
    ):
        if sub_app is not None:
            app.add_typer(sub_app, name=name)


_mount()
