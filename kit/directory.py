"""Professionals as people read them, from identity's directory (`GetProfessional`).

Services store RPPS numbers only; names, professions and specialties are looked up when
something is shown to a person (consent's access history, history_feed's care history) or
when a grant needs the grantee's profession (consent). One client for every service that
needs it: a long-lived channel, the calling service's signed internal principal, and a
small cache with a time to live (names and roles change rarely; a stale entry lives at most
`ttl_s`). An RPPS the directory does not know is cached as unknown for a shorter time, so
a page of unknown ids does not call identity once per line.

Reading never fails for a name: an unknown RPPS, an unconfigured directory (no
`DMP_IDENTITY_TARGET`: tests, a partial dev stack) or an unreachable one leaves the id
where the name would be (`describe` answers None; callers show the id).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit import clock, codes
from kit.clients import InternalCredentials, channel
from kit.logs import get_logger

log = get_logger(__name__)

_GET_PROFESSIONAL = "/dmp.identity.v1.IdentityService/GetProfessional"
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_TTL_S = 300.0
#: An RPPS the directory does not know is asked again sooner: it may be registered any time.
UNKNOWN_TTL_S = 30.0
#: Directory calls in flight per client: a care-history page may name hundreds of prescribers
#: and pharmacists the cache does not hold yet; identity is not asked for all at once.
MAX_CONCURRENT_CALLS = 16
#: Most distinct RPPS one `describe_many` looks up; beyond them the ids stay ids.
MAX_LOOKUPS_PER_READ = 1000
#: After the directory failed to answer, reads stop asking it for this long (ids stay ids):
#: an outage of identity costs one timeout, not one per page.
PAUSE_AFTER_FAILURE_S = 5.0


def profession_label(code: str) -> str:
    """The TRE_G15 label of `code` ("Infirmier"), or the code itself when unknown."""
    return codes.profession_label(code) if code and codes.is_valid("professions", code) else code


def specialty_label(code: str) -> str:
    """The TRE_R38 label of `code`, or the code itself when unknown ("" for none)."""
    if not code or not codes.is_valid("specialties", code):
        return code
    return codes.table("specialties")[code].label


@dataclass(frozen=True)
class ProfessionalInfo:
    rpps: str
    display_name: str
    profession_code: str
    specialty_code: str = ""
    #: Directory role names (lower case, e.g. "medecin_du_travail").
    roles: tuple[str, ...] = ()

    @property
    def profession_label(self) -> str:
        return profession_label(self.profession_code)

    @property
    def specialty_label(self) -> str:
        return specialty_label(self.specialty_code)


class ProfessionalNotFoundError(Exception):
    """The directory answered that this RPPS is unknown."""


class _TtlLru:
    """A bounded mapping whose entries expire `ttl` after they were put."""

    def __init__(self, size: int, ttl: timedelta, unknown_ttl: timedelta) -> None:
        self._size = size
        self._ttl = ttl
        self._unknown_ttl = unknown_ttl
        self._data: OrderedDict[str, tuple[datetime, ProfessionalInfo | None]] = OrderedDict()

    def get(self, key: str, now: datetime) -> tuple[bool, ProfessionalInfo | None]:
        """(found, value); a value of None is a cached 'unknown to the directory'."""
        entry = self._data.get(key)
        if entry is None:
            return False, None
        if entry[0] <= now:
            del self._data[key]
            return False, None
        self._data.move_to_end(key)
        return True, entry[1]

    def put(self, key: str, value: ProfessionalInfo | None, now: datetime) -> None:
        self._data[key] = (now + (self._ttl if value is not None else self._unknown_ttl), value)
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)


class DirectoryClient:
    """identity's directory for `service`; not configured when `target` is empty."""

    def __init__(
        self,
        service: str,
        target: str,
        key_id: str,
        keys: Mapping[str, bytes],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ttl_s: float = DEFAULT_TTL_S,
        timeout_s: float = 2.0,
        cache_clock: clock.Clock | None = None,
    ) -> None:
        self._target = target
        self._clock = cache_clock
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._credentials: InternalCredentials | None = None
        self._calls = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        self._paused_until: datetime | None = None
        self._cache = _TtlLru(
            cache_size, timedelta(seconds=ttl_s), timedelta(seconds=min(ttl_s, UNKNOWN_TTL_S))
        )
        if target:
            self._credentials = InternalCredentials(service, key_id, keys)

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
        if self._credentials is None or not rpps:
            return None
        now = self._clock.now() if self._clock is not None else clock.now()
        found, cached = self._cache.get(rpps, now)
        if found:
            if cached is None:
                raise ProfessionalNotFoundError(rpps)
            return cached
        if self._paused_until is not None and now < self._paused_until:
            return None
        try:
            async with self._calls:
                pro = await self._stub().GetProfessional(
                    identity_pb2.GetProfessionalRequest(name=f"professionals/{rpps}"),
                    metadata=self._credentials.metadata(_GET_PROFESSIONAL),
                    timeout=self._timeout_s,
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                self._cache.put(rpps, None, now)
                raise ProfessionalNotFoundError(rpps) from exc
            log.warning("directory_unavailable", code=exc.code().name)
            self._paused_until = now + timedelta(seconds=PAUSE_AFTER_FAILURE_S)
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
        self._cache.put(rpps, info, now)
        return info

    async def describe(self, rpps: str) -> ProfessionalInfo | None:
        """The professional, or None (unknown, not configured, unreachable): never raises."""
        try:
            return await self.lookup(rpps)
        except ProfessionalNotFoundError:
            return None

    async def describe_many(self, rpps_numbers: Iterable[str]) -> dict[str, ProfessionalInfo]:
        """The professionals the directory knows among `rpps_numbers` (each asked once, at most
        MAX_LOOKUPS_PER_READ of them)."""
        wanted = sorted({r for r in rpps_numbers if r})[:MAX_LOOKUPS_PER_READ]
        found = await asyncio.gather(*(self.describe(r) for r in wanted))
        return {r: info for r, info in zip(wanted, found, strict=True) if info is not None}

    async def display_name(self, rpps: str) -> str:
        info = await self.describe(rpps)
        return info.display_name if info else rpps

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
