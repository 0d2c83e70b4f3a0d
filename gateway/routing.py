"""Which upstream owns which proto package, and the per-method table built once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from dmp.authz.v1 import authz_pb2

# Imported for their descriptors: the pool only knows the services loaded.
from dmp.consent.v1 import consent_pb2  # noqa: F401
from dmp.history.v1 import history_pb2  # noqa: F401
from dmp.identity.v1 import identity_pb2  # noqa: F401
from dmp.notify.v1 import notify_pb2  # noqa: F401
from dmp.records.v1 import records_pb2  # noqa: F401
from kit.authz import method_authz

# Service full name → the upstream (DMP_<SERVICE>_TARGET setting stem).
SERVICES: dict[str, str] = {
    "dmp.identity.v1.IdentityService": "identity",
    "dmp.records.v1.RecordsService": "records",
    "dmp.consent.v1.ConsentService": "consent",
    "dmp.notify.v1.NotifyService": "notify",
    "dmp.history.v1.HistoryFeedService": "history_feed",
}


@dataclass(frozen=True)
class Route:
    """Everything the hot path needs about one public method, precomputed."""

    path: str
    upstream: str
    option: authz_pb2.MethodAuthz | None
    request_class: type[Message]
    record_field: tuple[str, ...]
    client_streaming: bool
    server_streaming: bool
    #: Where a write carries the deposited document's class and type (decided at the edge).
    class_field: tuple[str, ...] = ()
    type_field: tuple[str, ...] = ()


def build_routes() -> dict[str, Route]:
    """Every method of every routed service, keyed by full path."""
    pool = descriptor_pool.Default()
    routes: dict[str, Route] = {}
    for service_name, upstream in SERVICES.items():
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            path = f"/{service_name}/{method.name}"
            option = method_authz(path)
            field = option.record_field if option is not None else ""
            class_field = option.class_field if option is not None else ""
            type_field = option.type_field if option is not None else ""
            routes[path] = Route(
                path=path,
                upstream=upstream,
                option=option,
                request_class=message_factory.GetMessageClass(method.input_type),
                record_field=_path(field),
                client_streaming=method.client_streaming,
                server_streaming=method.server_streaming,
                class_field=_path(class_field),
                type_field=_path(type_field),
            )
    return routes


def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split(".")) if dotted else ()


def targets(settings: object) -> Mapping[str, str]:
    """Upstream name → address from `DMP_<SERVICE>_TARGET`."""
    return {name: str(getattr(settings, f"{name}_target")) for name in set(SERVICES.values())}
