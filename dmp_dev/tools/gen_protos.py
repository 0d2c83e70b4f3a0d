"""Regenerate the committed `dmp` package from `protos/`, and the google/api files it imports.

The output is committed so that services and vendors import it without a
toolchain; generating it from a pinned grpcio-tools and mypy-protobuf keeps
`make gen` free of diffs, which `tests/test_generated_code.py` checks.

The protos import google/api annotations (field_behavior, resource...). Their
`.proto` files ship in the googleapis-common-protos wheel the runtime already
pins, so they are copied from there into `third_party/googleapis` (no network
registry at build time). The copy is committed: `buf lint` and `buf breaking`
read it, and `buf breaking` compiles the previous commit from git alone.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OUT = ROOT / "dmp"
THIRD_PARTY = Path("third_party") / "googleapis"
#: The google/api files the protos may import (and what these import).
GOOGLE_API = ("annotations", "client", "field_behavior", "http", "launch_stage", "resource")


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def vendor_google_api(out_root: Path) -> Path:
    """Copy the google/api protos from the installed wheel under `out_root`; the include root."""
    spec = importlib.util.find_spec("google.api.field_behavior_pb2")
    if spec is None or spec.origin is None:
        raise SystemExit("googleapis-common-protos is not installed (make venv)")
    wheel = Path(spec.origin).parent
    root = out_root / THIRD_PARTY
    target = root / "google" / "api"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in GOOGLE_API:
        shutil.copyfile(wheel / f"{name}.proto", target / f"{name}.proto")
    return root


def generate(out_root: Path, google_api: Path) -> None:
    """Write the generated package under `out_root/dmp`, replacing what was there."""
    target = out_root / "dmp"
    if target.exists():
        shutil.rmtree(target)
    out_root.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{google_api}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *proto_files(),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    for directory in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    (target / "py.typed").touch()


def main() -> None:
    """Generate into a scratch directory, then swap it in, so a failed run leaves dmp/ intact."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    google_api = vendor_google_api(out)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        generate(Path(scratch), google_api)
        target = out / "dmp"
        old = Path(scratch) / "previous"
        if target.exists():
            target.rename(old)
        (Path(scratch) / "dmp").rename(target)


if __name__ == "__main__":
    main()
