"""`dmp`: developer and operator commands of the platform.

Sub-commands live in their own modules and are added here, so each stays
short and imports only what it needs.
"""

from __future__ import annotations

import importlib

import typer

from kit.devstack import catalog

app = typer.Typer(no_args_is_help=True, help="DMP platform: run, operate and try the platform.")

# Services runnable with `dmp serve NAME` (the launcher's catalog); each __main__ exposes main().
SERVICES = {spec.name: f"{spec.module}.__main__" for spec in catalog.CATALOG}


@app.callback()
def main() -> None:
    """DMP platform: run, operate and try the platform."""


@app.command()
def serve(service: str = typer.Argument(..., help="Service to run, e.g. identity.")) -> None:
    """Run one service in the foreground (configuration from DMP_* variables)."""
    module = SERVICES.get(service)
    if module is None:
        raise typer.BadParameter(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    importlib.import_module(module).main()


def _register_subcommands() -> None:
    for module_name, name in (
        ("kit.cli.dev", "dev"),
        ("kit.cli.migrate", "migrate"),
        ("kit.cli.records", "records"),
        ("kit.cli.history", "history"),
        ("kit.cli.policy", "policy"),
        ("kit.cli.notify", "notify"),
        ("kit.cli.pki", "pki"),
        ("kit.cli.demo", "demo"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.add_typer(module.app, name=name)


_register_subcommands()
