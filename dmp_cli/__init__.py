"""The `dmp` command (typer + rich): operator commands that ship in the production image.

Each service brings its own sub-commands (`services/<name>/cli.py`); this package mounts
them, adds `serve` and `migrate`, and the development commands of `dmp_dev` when that
package is installed (a checkout with `make`; never the image).
"""
