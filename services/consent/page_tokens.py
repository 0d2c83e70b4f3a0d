"""Consent's page tokens, in one place so the kit's pagination can replace them.

A token carries the last key read and a signature of the query's filters: a
token is refused on another query (INVALID_PAGE_TOKEN) rather than silently
paging through different results.
"""

from __future__ import annotations

import base64
import hashlib
import json

from kit.errors import invalid_argument

_REASON = "INVALID_PAGE_TOKEN"


def query_signature(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode(key: int, signature: str) -> str:
    raw = json.dumps({"k": key, "f": signature}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, signature: str) -> int | None:
    """The last key of the previous page; None for the first page."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = int(data["k"])
        same = data["f"] == signature
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_argument(_REASON, "Malformed page token.", "page_token") from exc
    if not same:
        raise invalid_argument(_REASON, "The page token belongs to another query.", "page_token")
    return key
