"""Build signed principals in tests, the way the gateway will."""

from __future__ import annotations

from dmp.authz.v1 import principal_pb2
from kit import principal as principals
from kit.settings import ServiceSettings


def patient(ins: str, subject: str = "", session_id: str = "s-test") -> principal_pb2.Principal:
    return principal_pb2.Principal(
        kind=principal_pb2.PRINCIPAL_KIND_PATIENT,
        subject=subject or f"patient-{ins}",
        patient_ins=ins,
        session_id=session_id,
    )


def professional(
    rpps: str, profession: str = "10", specialty: str = "", roles: tuple[str, ...] = ()
) -> principal_pb2.Principal:
    return principal_pb2.Principal(
        kind=principal_pb2.PRINCIPAL_KIND_PROFESSIONAL,
        subject=rpps,
        rpps=rpps,
        profession_code=profession,
        specialty_code=specialty,
        roles=list(roles),
    )


def staff(subject: str, roles: tuple[str, ...]) -> principal_pb2.Principal:
    return principal_pb2.Principal(
        kind=principal_pb2.PRINCIPAL_KIND_STAFF, subject=subject, roles=list(roles)
    )


def internal(service: str = "gateway") -> principal_pb2.Principal:
    return principals.internal_principal(service)


def metadata(
    principal: principal_pb2.Principal, method: str, settings: ServiceSettings | None = None
) -> tuple[tuple[str, bytes], ...]:
    """Signed `dmp-principal-bin` metadata for one call to `method` (full path)."""
    cfg = settings or ServiceSettings()
    keys = cfg.principal_key_bytes()
    return principals.metadata_for(
        principal, method, cfg.principal_key_id, keys[cfg.principal_key_id]
    )


def service(
    subject: str = "amo-feeder", roles: tuple[str, ...] = ("alimentation_amo",)
) -> principal_pb2.Principal:
    """A machine client (service certificate), by default the AMO feeder."""
    return principal_pb2.Principal(
        kind=principal_pb2.PRINCIPAL_KIND_SERVICE, subject=subject, roles=list(roles)
    )
