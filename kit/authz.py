"""The `dmp.authz.v1.authz` option of each RPC, read from the descriptor pool.

Lookups are built once per process into a dict keyed by the full method path
(`/dmp.identity.v1.IdentityService/StartLogin`), so the hot path never walks
descriptors.
"""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from dmp.authz.v1 import authz_pb2

# Methods every service serves that carry no authz option by design.
INFRASTRUCTURE_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def method_path(service: ServiceDescriptor, method_name: str) -> str:
    return f"/{service.full_name}/{method_name}"


@cache
def _service_options(service_full_name: str) -> dict[str, authz_pb2.MethodAuthz | None]:
    service = descriptor_pool.Default().FindServiceByName(service_full_name)
    table: dict[str, authz_pb2.MethodAuthz | None] = {}
    for method in service.methods:
        options = method.GetOptions()
        table[method_path(service, method.name)] = (
            options.Extensions[authz_pb2.authz] if options.HasExtension(authz_pb2.authz) else None
        )
    return table


def method_authz(path: str) -> authz_pb2.MethodAuthz | None:
    """The option of `path`, or None when the method is unknown or has none (refuse it)."""
    service_name = path.lstrip("/").partition("/")[0]
    try:
        return _service_options(service_name).get(path)
    except KeyError:
        return None


def is_infrastructure(path: str) -> bool:
    return path.startswith(INFRASTRUCTURE_PREFIXES)
