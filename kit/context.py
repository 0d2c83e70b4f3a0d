"""Per-call context: the verified principal of the RPC being served."""

from __future__ import annotations

from contextvars import ContextVar

from dmp.authz.v1 import principal_pb2
from kit.errors import unauthenticated

_principal: ContextVar[principal_pb2.Principal | None] = ContextVar("dmp_principal", default=None)


def set_principal(principal: principal_pb2.Principal | None) -> object:
    return _principal.set(principal)


def reset_principal(token: object) -> None:
    _principal.reset(token)  # type: ignore[arg-type]


def current_principal() -> principal_pb2.Principal | None:
    """The verified principal, or None for an anonymous call."""
    return _principal.get()


def require_principal() -> principal_pb2.Principal:
    principal = _principal.get()
    if principal is None:
        raise unauthenticated("UNAUTHENTICATED", "This method needs an authenticated caller.")
    return principal
