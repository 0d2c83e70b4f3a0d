"""The development commands of `dmp`: `dev up`, `demo` and `pki` (mounted by dmp_cli.main)."""

from __future__ import annotations

import typer

from dmp_dev.cli import demo, dev, pki

COMMANDS: dict[str, typer.Typer] = {"dev": dev.app, "demo": demo.app, "pki": pki.app}
