"""Opaque, tamper-evident page tokens (keyset cursors).

A token is base64url(JSON) + "." + HMAC: it names the last row served (sort
key, id) and a fingerprint of the request, so a token from another query, an
edited one or garbage is INVALID_ARGUMENT, never a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from google.protobuf.message import Message

from kit.errors import invalid_argument


def fingerprint(*parts: Message | str | int) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = (
            part.SerializeToString(deterministic=True)
            if isinstance(part, Message)
            else str(part).encode()
        )
        h.update(len(data).to_bytes(4, "big") + data)
    return h.hexdigest()[:32]


def _mac(key: bytes, body: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()[:16]).decode()


def encode(key: bytes, fp: str, position: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"f": fp, **position}).encode()).decode()
    return f"{body}.{_mac(key, body.encode())}"


def decode(key: bytes, token: str, fp: str) -> dict[str, Any]:
    bad = invalid_argument("INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token")
    body, _, mac = token.partition(".")
    if not body or not hmac.compare_digest(_mac(key, body.encode()), mac):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if not isinstance(data, dict) or data.get("f") != fp:
        raise bad
    return data


def page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise invalid_argument(
            "INVALID_PAGE_SIZE", "`page_size` must not be negative.", "page_size"
        )
    return min(requested or default, maximum)
