"""Page sizes and page tokens (AIP-158): one format and one set of reasons for every list.

A token is `base64url(JSON position) "." base64url(MAC)`, the MAC an HMAC-SHA256 (first
16 bytes) over the position *and* a fingerprint of the request's other fields. So a token
that was edited, forged, issued by another service or replayed with a changed filter (or
by another caller, when the call site binds the caller into the fingerprint) is refused
as INVALID_ARGUMENT `INVALID_PAGE_TOKEN` instead of serving a silently wrong page. The
fingerprint is not carried in the token: the MAC alone ties the two.

The key is derived from the platform's principal keys (`DMP_PRINCIPAL_KEYS`, which every
service process already holds), labelled with the service name: every replica of a
service reads the tokens of every other, a token of one service is no token of another,
and a key rotation keeps the tokens signed with the previous key readable while that key
is still listed.

The position is what the query continues after (a keyset cursor: last sort key and id)
or an offset; a call site reads it back with `Position.integer` / `Position.text`, which
refuse a position of the wrong shape with the same reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime

from google.protobuf.message import Message

from kit.errors import ServiceError, invalid_argument
from kit.settings import ServiceSettings

#: AIP-158's usual sizes; a method documents its own in its proto (passed to `page_size`).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Longer tokens are refused before any decoding (ours are well under 300 characters).
MAX_TOKEN_LENGTH = 1024
_MAC_BYTES = 16
_PAGING_FIELDS = ("page_token", "page_size")

Part = Message | str | int | bool | date | None | Sequence["Part"]


def page_size(
    requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """The size to serve: `default` for 0, at most `maximum`; negative is INVALID_PAGE_SIZE."""
    if requested < 0:
        raise invalid_argument(
            "INVALID_PAGE_SIZE", "`page_size` must not be negative.", "page_size"
        )
    return min(requested or default, maximum)


def invalid_token(message: str = "The page token is invalid.") -> ServiceError:
    """INVALID_ARGUMENT INVALID_PAGE_TOKEN (the one answer to any unusable token)."""
    return invalid_argument("INVALID_PAGE_TOKEN", message, "page_token")


def fingerprint(*parts: Part) -> bytes:
    """A digest of the request fields a token must not outlive (filters, parent, caller...).

    Messages count by their deterministic encoding; lists by their order, so a call site
    whose filter is a set sorts it first. Each part is length-prefixed and typed: ("a", "bc")
    and ("ab", "c"), 1 and "1" differ.
    """
    chunks: list[bytes] = []
    for part in parts:
        _feed(chunks, part)
    return hashlib.sha256(b"".join(chunks)).digest()


def request_fingerprint(request: Message, *extra: Part) -> bytes:
    """`fingerprint` of every field of `request` but `page_token` and `page_size`, plus `extra`.

    AIP-158: every other field must stay the same across the pages of one listing.
    """
    copy = type(request)()
    copy.CopyFrom(request)
    for name in _PAGING_FIELDS:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return fingerprint(copy, *extra)


def _feed(chunks: list[bytes], part: Part) -> None:
    if isinstance(part, Message):
        tag, data = b"m", part.SerializeToString(deterministic=True)
    elif isinstance(part, bool):
        tag, data = b"b", b"1" if part else b"0"
    elif isinstance(part, int):
        tag, data = b"i", str(part).encode()
    elif isinstance(part, str):
        tag, data = b"s", part.encode()
    elif isinstance(part, datetime | date):
        tag, data = b"t", part.isoformat().encode()
    elif part is None:
        tag, data = b"n", b""
    else:
        chunks.append(b"l" + len(part).to_bytes(4, "big"))
        for item in part:
            _feed(chunks, item)
        return
    chunks.append(tag + len(data).to_bytes(4, "big") + data)


class Position:
    """The position a token carries; each accessor refuses a wrong shape as INVALID_PAGE_TOKEN."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values

    def integer(self, name: str, minimum: int = 0) -> int:
        value = self._values.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise invalid_token()
        return value

    def text(self, name: str) -> str:
        value = self._values.get(name)
        if not isinstance(value, str):
            raise invalid_token()
        return value


class PageTokens:
    """Issues and reads one service's page tokens."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("PageTokens needs at least one key")
        self._keys = tuple(keys)

    @classmethod
    def for_service(cls, settings: ServiceSettings, service: str) -> PageTokens:
        """Keys derived from the principal keys (the current one signs, every one reads)."""
        keys = settings.principal_key_bytes()
        ordered = [keys[settings.principal_key_id]] + [
            key for key_id, key in sorted(keys.items()) if key_id != settings.principal_key_id
        ]
        label = f"dmp-page-token|{service}".encode()
        return cls([hmac.new(key, label, hashlib.sha256).digest() for key in ordered])

    def issue(self, position: Mapping[str, str | int], request_print: bytes) -> str:
        """The `next_page_token` continuing after `position` for this request fingerprint."""
        raw = json.dumps(dict(position), sort_keys=True).encode()
        body = base64.urlsafe_b64encode(raw)
        mac = base64.urlsafe_b64encode(_mac(self._keys[0], body, request_print))
        return f"{body.decode()}.{mac.decode()}"

    def read(self, token: str, request_print: bytes) -> Position | None:
        """The position of `token` (None when empty: the first page), else INVALID_PAGE_TOKEN."""
        if not token:
            return None
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise invalid_token()
        body_text, _, mac_text = token.partition(".")
        body = body_text.encode()
        try:
            mac = _b64decode(mac_text)
        except (binascii.Error, ValueError) as exc:
            raise invalid_token() from exc
        if not any(hmac.compare_digest(_mac(key, body, request_print), mac) for key in self._keys):
            raise invalid_token("The page token is invalid or the request changed.")
        try:
            values = json.loads(_b64decode(body_text))
        except (binascii.Error, ValueError) as exc:  # signed by us: cannot happen, still refused
            raise invalid_token() from exc
        if not isinstance(values, dict):
            raise invalid_token()
        return Position(values)


def _mac(key: bytes, body: bytes, request_print: bytes) -> bytes:
    signed = len(request_print).to_bytes(2, "big") + request_print + body
    return hmac.new(key, signed, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64decode(text: str) -> bytes:
    """Strict base64url: padding required, nothing after it (b64decode's default ignores junk)."""
    return base64.b64decode(text, altchars=b"-_", validate=True)
