"""The verified caller, carried from the gateway to services in signed metadata.

The gateway (and a service calling another) serializes a `Principal`, MACs it
with a key shared by the platform's processes and sends it as
`dmp-principal-bin`. A principal is bound to one method and expires within
seconds, so a captured header cannot be replayed against another RPC.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError

from dmp.authz.v1 import principal_pb2
from kit import clock
from kit.errors import permission_denied, unauthenticated

METADATA_KEY = "dmp-principal-bin"
DEFAULT_TTL = timedelta(seconds=60)

Principal = principal_pb2.Principal
PrincipalKind = principal_pb2.PrincipalKind


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def sign(principal: principal_pb2.Principal, key_id: str, key: bytes) -> bytes:
    """Serialized `SignedPrincipal` for the `dmp-principal-bin` metadata."""
    payload = principal.SerializeToString(deterministic=True)
    return principal_pb2.SignedPrincipal(
        payload=payload, mac=_mac(key, payload), key_id=key_id
    ).SerializeToString()


def stamp(
    principal: principal_pb2.Principal,
    method: str,
    *,
    now: datetime | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> principal_pb2.Principal:
    """A copy bound to `method` with issue and expiry times."""
    issued = now or clock.now()
    out = principal_pb2.Principal()
    out.CopyFrom(principal)
    out.method = method
    out.issue_time.FromDatetime(issued)
    out.expire_time.FromDatetime(issued + ttl)
    return out


def verify(
    data: bytes,
    keys: Mapping[str, bytes],
    method: str,
    *,
    now: datetime | None = None,
) -> principal_pb2.Principal:
    """Check MAC (constant time), key, method binding and expiry; raise UNAUTHENTICATED."""
    signed = principal_pb2.SignedPrincipal()
    try:
        signed.ParseFromString(data)
    except DecodeError as exc:
        raise unauthenticated(
            "PRINCIPAL_MALFORMED", "The principal metadata is malformed."
        ) from exc
    key = keys.get(signed.key_id)
    if key is None:
        raise unauthenticated(
            "PRINCIPAL_KEY_UNKNOWN", "The principal is signed with an unknown key."
        )
    if not hmac.compare_digest(_mac(key, signed.payload), signed.mac):
        raise unauthenticated("PRINCIPAL_BAD_SIGNATURE", "The principal signature is invalid.")
    principal = principal_pb2.Principal()
    try:
        principal.ParseFromString(signed.payload)
    except DecodeError as exc:
        raise unauthenticated("PRINCIPAL_MALFORMED", "The principal payload is malformed.") from exc
    if principal.method != method:
        raise unauthenticated(
            "PRINCIPAL_WRONG_METHOD", "The principal was issued for another method."
        )
    current = now or clock.now()
    if not principal.HasField("expire_time") or principal.expire_time.ToDatetime(UTC) <= current:
        raise unauthenticated("PRINCIPAL_EXPIRED", "The principal has expired.")
    if principal.kind == principal_pb2.PRINCIPAL_KIND_UNSPECIFIED:
        raise unauthenticated("PRINCIPAL_MALFORMED", "The principal has no kind.")
    return principal


def metadata_for(
    principal: principal_pb2.Principal, method: str, key_id: str, key: bytes
) -> tuple[tuple[str, bytes], ...]:
    """gRPC metadata carrying `principal` for a call to `method`."""
    return ((METADATA_KEY, sign(stamp(principal, method), key_id, key)),)


def internal_principal(service: str) -> principal_pb2.Principal:
    """The principal a platform service presents when it calls another service."""
    return principal_pb2.Principal(kind=principal_pb2.PRINCIPAL_KIND_INTERNAL, subject=service)


def require_kind(principal: principal_pb2.Principal | None, *kinds: int) -> principal_pb2.Principal:
    """The principal if it is one of `kinds`, else PERMISSION_DENIED / UNAUTHENTICATED."""
    if principal is None:
        raise unauthenticated("UNAUTHENTICATED", "This method needs an authenticated caller.")
    if principal.kind not in kinds:
        raise permission_denied(
            "PRINCIPAL_KIND_NOT_ALLOWED", "This caller may not use this method."
        )
    return principal
