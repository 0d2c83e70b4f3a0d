"""The `dmp` command line (typer + rich)."""
