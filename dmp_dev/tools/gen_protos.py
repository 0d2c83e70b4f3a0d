"""Regenerate the committed `dmp` package from `protos/`.

The output is committed so that services and vendors import it without a
toolchain; generating it from a pinned grpcio-tools and mypy-protobuf keeps
`make gen` free of diffs, which `tests/test_generated_code.py` checks.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OUT = ROOT / "dmp"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def generate(out_root: Path) -> None:
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
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        generate(Path(scratch))
        target = out / "dmp"
        old = Path(scratch) / "previous"
        if target.exists():
            target.rename(old)
        (Path(scratch) / "dmp").rename(target)


if __name__ == "__main__":
    main()
