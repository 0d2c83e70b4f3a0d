"""Write docs/openapi.json: the JSON door's OpenAPI, from the generated descriptors (`make gen`).

Run after gen_protos, in a process of its own, so it reads the freshly generated
`dmp` package; `tests/door/test_openapi.py` checks the committed file is current
and is what the door serves.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.http.openapi import openapi_json
from gateway.http.rules import build_http_routes
from gateway.routing import build_routes

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "docs" / "openapi.json"


def document() -> bytes:
    return openapi_json(build_http_routes(build_routes()))


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    target.write_bytes(document())


if __name__ == "__main__":
    main()
