"""The committed dmp/ package is exactly what `make gen` produces from protos/ (and
third_party/googleapis the google/api protos of the pinned wheel), and every RPC it exposes
carries a usable dmp.authz.v1.authz option (deny by default)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from dmp.authz.v1 import authz_pb2

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "dmp"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_make_gen_leaves_no_diff(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "dmp_dev.tools.gen_protos", str(tmp_path)],
        check=True,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    # dmp/ from protos/, and the google/api protos vendored from the pinned wheel.
    for part in ("dmp", "third_party/googleapis"):
        fresh, committed = _files(tmp_path / part), _files(REPO / part)
        missing = sorted(set(fresh) - set(committed))
        stale = sorted(set(committed) - set(fresh))
        changed = sorted(n for n in set(fresh) & set(committed) if fresh[n] != committed[n])
        hint = f"run `make gen` and commit {part}/"
        assert not missing, f"{hint}: not committed {missing}"
        assert not stale, f"{hint}: no longer generated {stale}"
        assert not changed, f"{hint}: differ {changed}"


def _pb2_modules() -> list[str]:
    return sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in COMMITTED.rglob("*_pb2.py")
        if "__pycache__" not in p.parts
    )


def _methods() -> list[tuple[str, object]]:
    found = []
    for name in _pb2_modules():
        module = importlib.import_module(name)
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend((f"/{service.full_name}/{m.name}", m) for m in service.methods)
    return found


def test_there_are_services_to_check() -> None:
    assert _methods(), "no service found in dmp/"


@pytest.mark.parametrize(
    ("path", "method"), _methods(), ids=lambda v: str(v) if isinstance(v, str) else ""
)
def test_every_rpc_has_an_authz_action(path: str, method: object) -> None:
    options = method.GetOptions()  # type: ignore[attr-defined]
    assert options.HasExtension(authz_pb2.authz), f"{path} has no dmp.authz.v1.authz option"
    option = options.Extensions[authz_pb2.authz]
    assert option.action != authz_pb2.ACTION_UNSPECIFIED, f"{path}: action is UNSPECIFIED"
    assert option.resource_kind != authz_pb2.RESOURCE_KIND_UNSPECIFIED, f"{path}: no resource kind"
