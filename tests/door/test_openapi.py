"""docs/openapi.json is what `make gen` writes from the protos and what the door serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dmp_dev.testing.stack import LiveStack
from dmp_dev.tools.gen_openapi import TARGET, document
from tests.door.helpers import http_client

REPO = Path(__file__).resolve().parents[2]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def test_committed_openapi_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "openapi.json"
    subprocess.run(
        [sys.executable, "-m", "dmp_dev.tools.gen_openapi", str(fresh)],
        check=True,
        cwd=REPO,
        timeout=120,
    )
    assert fresh.read_bytes() == TARGET.read_bytes(), "run `make gen` and commit docs/openapi.json"


def test_openapi_is_whole() -> None:
    spec = json.loads(document())
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "get" in spec["paths"]["/v1/dossiers/{dossier}/documents/{document}"]
    assert not any("authorize" in path.lower() for path in spec["paths"])


async def test_the_door_serves_it(stack: LiveStack) -> None:
    async with http_client(stack) as client, client.get("/v1/openapi.json") as response:
        assert response.status == 200
        assert await response.read() == TARGET.read_bytes()
