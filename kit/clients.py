"""Service-to-service gRPC channels and the internal principal they present."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from kit import principal as principals

# gRPC's default reconnect backoff (1 s, x1.6, up to 120 s) keeps a channel failing fast for
# seconds after its peer came back (7 s measured after a 3.5 s outage of records,
# tests/faults): between our own services a restarted peer is worth retrying soon.
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def channel(target: str, max_message_bytes: int = 32 * 1024 * 1024) -> grpc.aio.Channel:
    """A long-lived channel with trace propagation; create once, reuse for every call."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *RECONNECT_OPTIONS,
        ],
        interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
    )


class InternalCredentials:
    """Signs the calling service's internal principal for each outgoing call."""

    def __init__(self, service: str, key_id: str, keys: Mapping[str, bytes]) -> None:
        self._principal = principals.internal_principal(service)
        self._key_id = key_id
        self._key = keys[key_id]

    def metadata(self, method: str) -> tuple[tuple[str, bytes], ...]:
        return principals.metadata_for(self._principal, method, self._key_id, self._key)
