"""Professionals' names and professions from identity's directory (optional).

Consent stores RPPS numbers only; names are looked up when shown to the
patient. Without `DMP_IDENTITY_TARGET` (tests, a partial dev stack) the RPPS
stands in for the name.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit.clients import InternalCredentials, channel
from kit.logs import get_logger
from services.consent.cache import Lru
from services.consent.settings import ConsentSettings

log = get_logger(__name__)

_GET_PROFESSIONAL = "/dmp.identity.v1.IdentityService/GetProfessional"


@dataclass(frozen=True)
class ProfessionalInfo:
    rpps: str
    display_name: str
    profession_code: str
    specialty_code: str = ""
    #: Directory role names (lower case, e.g. "medecin_du_travail").
    roles: tuple[str, ...] = ()


class ProfessionalNotFoundError(Exception):
    """The directory answered that this RPPS is unknown."""


class DirectoryClient:
    def __init__(self, settings: ConsentSettings) -> None:
        self._target = settings.identity_target
        self._channel: grpc.aio.Channel | None = None
        self._credentials: InternalCredentials | None = None
        self._cache: Lru[str, ProfessionalInfo] = Lru(10_000)
        if self._target:
            self._credentials = InternalCredentials(
                "consent", settings.principal_key_id, settings.principal_key_bytes()
            )

    @property
    def configured(self) -> bool:
        return self._credentials is not None

    def _stub(self) -> identity_pb2_grpc.IdentityServiceStub:
        # Created on first use, inside the serving event loop: an aio channel made before
        # `uvloop.run` (the app is built first) is bound to another loop and every call fails.
        if self._channel is None:
            self._channel = channel(self._target)
        return identity_pb2_grpc.IdentityServiceStub(self._channel)

    async def lookup(self, rpps: str) -> ProfessionalInfo | None:
        """The professional, None when the directory is not configured or unreachable.

        Raises ProfessionalNotFoundError when the directory says the RPPS is unknown.
        """
        if self._credentials is None:
            return None
        cached = self._cache.get(rpps)
        if cached is not None:
            return cached
        stub = self._stub()
        try:
            pro = await stub.GetProfessional(
                identity_pb2.GetProfessionalRequest(name=f"professionals/{rpps}"),
                metadata=self._credentials.metadata(_GET_PROFESSIONAL),
                timeout=2.0,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ProfessionalNotFoundError(rpps) from exc
            log.warning("directory_unavailable", code=exc.code().name)
            return None
        info = ProfessionalInfo(
            rpps=rpps,
            display_name=f"{pro.given_name} {pro.family_name}".strip() or rpps,
            profession_code=pro.profession_code,
            specialty_code=pro.specialty_code,
            roles=tuple(
                identity_pb2.ProfessionalRole.Name(role).removeprefix("PROFESSIONAL_ROLE_").lower()
                for role in pro.roles
                if role in identity_pb2.ProfessionalRole.values()
            ),
        )
        self._cache.put(rpps, info)
        return info

    async def display_name(self, rpps: str) -> str:
        try:
            info = await self.lookup(rpps)
        except ProfessionalNotFoundError:
            return rpps
        return info.display_name if info else rpps

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
