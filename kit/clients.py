"""Service-to-service gRPC channels: options, retry policy, and the internal principal they present.

Retries are gRPC's own (a `retryPolicy` in the channel's service config), not loops around
calls: an attempt that ends UNAVAILABLE (peer restarting, connection refused, a replica
draining) is tried again, at most `MAX_ATTEMPTS` times in all with a short exponential
backoff, within the call's deadline, and only for methods a second attempt cannot harm:
- requests with a `request_id` (AIP-155): the service deduplicates them, so a retry of an
  attempt that did commit gets the first answer back;
- reads (`READ_VERBS`: AIP Get/List/Search and the custom reads Verify/Resolve; and
  `CUSTOM_READS` by name), which have no side effect (CheckDossierExistence appends an
  access-log entry, which a retry repeats: a second line, not a second effect).
With a target naming several replicas (round_robin, see `service_config`) the retried attempt
goes to another replica, so a lost replica is invisible to callers of those methods.
Any other method is never retried (deny by default; tests/kit/test_kit_clients.py fails
when a platform method is neither). Throttling stops retries while most calls to a peer
fail, so an outage does not triple the load on the peer when it comes back. A call whose
request is larger than gRPC's per-call retry buffer (256 KiB) is not retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache

import grpc
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from dmp.consent.v1 import consent_pb2
from dmp.history.v1 import history_pb2
from dmp.identity.v1 import identity_pb2
from dmp.notify.v1 import notify_pb2
from dmp.records.v1 import records_pb2
from kit import principal as principals

# gRPC's default reconnect backoff (1 s, x1.6, up to 120 s) keeps a channel failing fast for
# seconds after its peer came back (7 s measured after a 3.5 s outage of records,
# tests/faults): between our own services a restarted peer is worth retrying soon.
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
PLATFORM_FILES: tuple[FileDescriptor, ...] = (
    identity_pb2.DESCRIPTOR,
    records_pb2.DESCRIPTOR,
    consent_pb2.DESCRIPTOR,
    notify_pb2.DESCRIPTOR,
    history_pb2.DESCRIPTOR,
)
READ_VERBS = ("Get", "List", "Search", "Verify", "Resolve")
#: Platform reads whose verb says less than a Get: the existence test, the creation counts.
CUSTOM_READS = frozenset({"CheckDossierExistence", "CountDossierCreations"})
MAX_ATTEMPTS = 3
RETRY_POLICY = {
    "maxAttempts": MAX_ATTEMPTS,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# A failure costs a token, a success gives 0.1 back; below 5 of 10 tokens, no retries.
RETRY_THROTTLING = {"maxTokens": 10, "tokenRatio": 0.1}


def retry_safe(method: MethodDescriptor) -> bool:
    """Whether a second attempt of `method` cannot do harm (see the module docstring)."""
    return (
        "request_id" in method.input_type.fields_by_name
        or method.name.startswith(READ_VERBS)
        or (method.name in CUSTOM_READS and method.containing_service.file in PLATFORM_FILES)
    )


def platform_methods() -> Iterator[MethodDescriptor]:
    for file in PLATFORM_FILES:
        for service in file.services_by_name.values():
            yield from service.methods


def balanced(target: str) -> bool:
    """Whether `target` may name several replicas: a list of addresses or a DNS name."""
    return "," in target or target.startswith("dns:")


@cache
def service_config(balance: bool = True) -> str:
    """The JSON service config of every platform channel (one entry per retried method).

    A single address keeps gRPC's pick_first: a channel to one replica goes idle when its
    peer restarts and reconnects on the next call, whereas round_robin keeps the dead
    subchannel in backoff and fails calls at once until its next reconnect attempt (seen in
    tests/faults: UNAVAILABLE right after a restart that pick_first waited through).
    """
    names = [
        {"service": method.containing_service.full_name, "method": method.name}
        for method in platform_methods()
        if retry_safe(method)
    ]
    policy: list[dict[str, dict[str, object]]] = (
        [{"round_robin": {}}] if balance else [{"pick_first": {}}]
    )
    return json.dumps(
        {
            # A target may name several replicas (`ipv4:10.0.0.1:50052,10.0.0.2:50052`, or a
            # headless Service's `dns:///records:50052`): spread calls over every replica that
            # is up. pick_first (gRPC's default) would send everything to one of them and only
            # move after it failed; round_robin skips a dead replica at once, and the retry
            # policy sends an attempt that met it to another one.
            "loadBalancingConfig": policy,
            "methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}],
            "retryThrottling": RETRY_THROTTLING,
        }
    )


def channel_options(max_message_bytes: int, target: str = "") -> list[tuple[str, str | int]]:
    """Options of a channel to a platform service (the gateway's upstreams use them too)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *RECONNECT_OPTIONS,
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(balanced(target))),
    ]


def channel(target: str, max_message_bytes: int = 32 * 1024 * 1024) -> grpc.aio.Channel:
    """A long-lived channel with trace propagation; create once, reuse for every call."""
    return grpc.aio.insecure_channel(
        target,
        options=channel_options(max_message_bytes, target),
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
