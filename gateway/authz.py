"""Authorization before routing: ask consent.Authorize, cache the answer briefly.

The cache is keyed by (caller, method, record value) — the method fixes the
action and resource kind — and holds the signed principal with the decision's
scope, ready to forward: a cached call costs a dict lookup. Entries live at
most `ttl` seconds and never past the decision's `cache_expire_time`; a
`dmp.consent.changed` event for a record drops its entries at once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, timedelta

import grpc
from google.protobuf.message import DecodeError, Message

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from gateway.authn import Caller
from gateway.routing import Route
from kit import clock as kit_clock
from kit import names, targets, tracing
from kit import principal as principals
from kit.clients import InternalCredentials
from kit.errors import ServiceError, invalid_argument, status_code, unavailable
from kit.logs import get_logger
from kit.metrics import DECISION_CACHE_HIT, DECISION_CACHE_MISS
from kit.tracing import TRACEPARENT

log = get_logger(__name__)
AUTHORIZE = "/dmp.consent.v1.ConsentService/Authorize"
ATTRIBUTES = "/dmp.records.v1.RecordsService/GetDocumentAttributes"
_DOCUMENT_NAME = re.compile(r"dossiers/[0-9a-f]{32}/documents/[0-9a-f]{32}")
_DENIED_MESSAGE = {
    grpc.StatusCode.NOT_FOUND: "The resource does not exist or is not accessible.",
    grpc.StatusCode.PERMISSION_DENIED: "This caller may not do this.",
    grpc.StatusCode.FAILED_PRECONDITION: "The record does not allow this now.",
    grpc.StatusCode.UNAUTHENTICATED: "This method needs an authenticated caller.",
}
# A principal forwarded from the cache must still be valid when the service checks it.
PRINCIPAL_TTL = timedelta(seconds=60)
_MAX_ENTRIES = 100_000
_MEMO_MAX_REQUEST = 512


_READS = frozenset(
    {
        authz_pb2.ACTION_READ,
        authz_pb2.ACTION_READ_ADMINISTRATIVE,
        authz_pb2.ACTION_READ_ACCESS_LOG,
        authz_pb2.ACTION_READ_ACCESS_RULES,
        authz_pb2.ACTION_READ_DIRECTORY,
    }
)


def _is_read(route: Route) -> bool:
    return route.option is not None and route.option.action in _READS


@dataclass(frozen=True)
class Target:
    """What the request names: the record (or patient), the full resource name and, for a
    write that deposits a document, the class and type it declares."""

    dossier: str = ""
    patient_ins: str = ""
    resource: str = ""
    class_code: str = ""
    type_code: str = ""

    @property
    def key(self) -> str:
        named = self.resource or self.dossier or self.patient_ins
        # A write is decided on its class: a decision for one class never serves another.
        return (
            f"{named}|{self.class_code}|{self.type_code}"
            if self.class_code or self.type_code
            else named
        )


def extract_target(route: Route, request: bytes) -> Target:
    """Parse the request once (with its own class) and read the fields the decision needs."""
    if not route.record_field:
        return Target()
    message: Message = route.request_class()
    try:
        message.ParseFromString(request)
    except DecodeError as exc:
        raise invalid_argument("REQUEST_MALFORMED", "The request cannot be decoded.") from exc
    found = targets.named(route.record_field, targets.field_value(message, route.record_field))
    target = Target(found.dossier, found.patient_ins, found.resource)
    if route.class_field or route.type_field:
        target = replace(
            target,
            class_code=(
                targets.field_value(message, route.class_field) if route.class_field else ""
            ),
            type_code=targets.field_value(message, route.type_field) if route.type_field else "",
        )
    return target


@dataclass
class Entry:
    expires: float
    dossier: str
    signed: bytes | None
    issued_wall: float
    error: ServiceError | None = None


class Decisions:
    """consent.Authorize with a short cache; `admit` returns the signed principal to forward."""

    def __init__(
        self,
        consent: consent_pb2_grpc.ConsentServiceStub,
        credentials: InternalCredentials,
        key_id: str,
        key: bytes,
        *,
        records: records_pb2_grpc.RecordsServiceStub | None = None,
        ttl_s: float = 5.0,
        timeout_s: float = 3.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = kit_clock.monotonic,
    ) -> None:
        self._consent = consent
        self._records = records
        self._credentials = credentials
        self._key_id = key_id
        self._key = key
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._clock = clock
        self._cache: dict[tuple[str, str, str], Entry] = {}
        self._targets: dict[tuple[str, bytes], Target] = {}
        self._settle_s = settle_s
        self._invalidated: dict[str, float] = {}
        self._all_invalidated = float("-inf")
        #: False while the change feed is disconnected: nothing is cached meanwhile.
        self.caching = True
        self.authorize_calls = 0

    def invalidate(self, dossier: str) -> None:
        """Drop every decision about `dossier` (empty: drop everything).

        For `settle_s` after, no decision about it is cached: with several consent
        replicas, the one answering the next Authorize may not have handled the same event
        yet (or was asked before the change and answers after it); caching that answer would
        keep the old decision for a whole TTL. Uncached, the next call asks again.
        """
        now = self._clock()
        if not dossier:
            self._cache.clear()
            self._invalidated.clear()
            self._all_invalidated = now
            return
        if len(self._invalidated) >= _MAX_ENTRIES:
            self._invalidated = {
                d: t for d, t in self._invalidated.items() if t + self._settle_s > now
            }
        self._invalidated[dossier] = now
        for key in [k for k, e in self._cache.items() if e.dossier == dossier]:
            self._cache.pop(key, None)

    def _settled(self, dossier: str, started: float) -> bool:
        """Whether a decision asked at `started` may be cached (see `invalidate`)."""
        last = max(self._all_invalidated, self._invalidated.get(dossier, float("-inf")))
        return self.caching and started > last + self._settle_s

    def _target(self, route: Route, request: bytes) -> Target:
        """`extract_target`, memoized for small read requests: a client repeating a read
        sends the same bytes, and parsing them again is a measurable part of a cached call.
        Only reads: a write's bytes may hold medical content, which the edge must not keep."""
        if len(request) > _MEMO_MAX_REQUEST or not _is_read(route):
            return extract_target(route, request)
        key = (route.path, request)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_ENTRIES:
                self._targets.clear()
            target = self._targets[key] = extract_target(route, request)
        return target

    def _store(self, key: tuple[str, str, str], entry: Entry, now: float) -> None:
        if len(self._cache) >= _MAX_ENTRIES:
            # Bounded memory: expired entries go first, everything if that is not enough.
            for stale in [k for k, e in self._cache.items() if e.expires <= now]:
                del self._cache[stale]
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
        self._cache[key] = entry

    def sign(self, principal: principal_pb2.Principal, path: str) -> bytes:
        stamped = principals.stamp(principal, path, ttl=PRINCIPAL_TTL)
        return principals.sign(stamped, self._key_id, self._key)

    async def admit(
        self, route: Route, caller: Caller, request: bytes, traceparent: str | None
    ) -> bytes:
        """The signed principal with scope for this call, or raise the denial."""
        target = self._target(route, request)
        cache_key = (caller.key, route.path, target.key)
        now = self._clock()
        entry = self._cache.get(cache_key)
        if entry is not None and entry.expires > now:
            DECISION_CACHE_HIT.inc()
            if entry.error is not None:
                raise entry.error
            assert entry.signed is not None
            return entry.signed
        DECISION_CACHE_MISS.inc()
        response = await self._authorize(route, caller, target, traceparent)
        until = now + self._ttl
        if response.HasField("cache_expire_time"):
            remaining = (
                response.cache_expire_time.ToDatetime(UTC) - kit_clock.now()
            ).total_seconds()
            until = min(until, now + max(0.0, remaining))
        if response.decision != consent_pb2.DECISION_ALLOWED:
            error = _denial(response, caller)
            # Denials are not cached: a grant must work at once even if its event is late.
            raise error
        principal = principal_pb2.Principal()
        principal.CopyFrom(caller.principal)
        principal.scope.CopyFrom(response.scope)
        # Good for the record decided on only: the services refuse it for another.
        principal.binding.CopyFrom(
            targets.binding(
                response.dossier,
                targets.Named(target.dossier, target.patient_ins, target.resource),
            )
        )
        if not principal.scope.policy_version:
            principal.scope.policy_version = response.policy_version
        signed = self.sign(principal, route.path)
        dossier = response.dossier or target.dossier
        if self._ttl > 0 and until > now and self._settled(dossier, now):
            entry = Entry(until, dossier, signed, kit_clock.timestamp())
            self._store(cache_key, entry, now)
        return signed

    async def _document_attributes(
        self,
        target: Target,
        resource: consent_pb2.ResourceAttributes,
        traceparent: str | None,
    ) -> None:
        """Fill `resource` with what records will enforce about the named document, so that
        consent decides, logs and alerts once, on the access that will really happen."""
        if not _DOCUMENT_NAME.fullmatch(target.resource):
            raise names.invalid_name("`name` is not a valid document name.")
        if self._records is None:  # no records upstream configured: records alone enforces
            return
        try:
            found: records_pb2.DocumentAttributes = await self._records.GetDocumentAttributes(
                records_pb2.GetDocumentAttributesRequest(name=target.resource),
                metadata=_traced(self._credentials.metadata(ATTRIBUTES), traceparent),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                resource.absent = True
                return
            log.warning("document_attributes_failed", code=exc.code().name)
            raise unavailable("RECORDS_UNAVAILABLE", "Authorization is unavailable.") from exc
        resource.document_class_code = found.class_code
        resource.document_type_code = found.type_code
        resource.confidentiality_codes.extend(found.confidentiality_codes)
        resource.author_rpps = found.author_rpps
        resource.author_subject = found.author_subject
        resource.deleted = found.deleted

    async def _authorize(
        self, route: Route, caller: Caller, target: Target, traceparent: str | None
    ) -> consent_pb2.AuthorizeResponse:
        option = route.option
        assert option is not None
        resource = consent_pb2.ResourceAttributes(
            name=target.resource,
            document_class_code=target.class_code,
            document_type_code=target.type_code,
        )
        if option.resource_attributes:
            await self._document_attributes(target, resource, traceparent)
        request = consent_pb2.AuthorizeRequest(
            principal=caller.principal,
            action=option.action,
            resource_kind=option.resource_kind,
            dossier=target.dossier,
            patient_ins=target.patient_ins,
            resource=resource,
            method=route.path,
            request_id=uuid.uuid4().hex,
            trace_id=tracing.trace_id(),
        )
        self.authorize_calls += 1
        metadata = _traced(self._credentials.metadata(AUTHORIZE), traceparent)
        try:
            response: consent_pb2.AuthorizeResponse = await self._consent.Authorize(
                request, metadata=metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ServiceError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "PRINCIPAL_REFUSED",
                    "This caller may not do this.",
                ) from exc
            log.warning("authorize_failed", code=exc.code().name)
            raise unavailable("CONSENT_UNAVAILABLE", "Authorization is unavailable.") from exc
        return response


def _traced(
    metadata: tuple[tuple[str, str | bytes], ...], traceparent: str | None
) -> tuple[tuple[str, str | bytes], ...]:
    """The internal call's span joins the client call's trace, under the gateway's span."""
    return (*metadata, (TRACEPARENT, traceparent)) if traceparent else metadata


def _denial(response: consent_pb2.AuthorizeResponse, caller: Caller) -> ServiceError:
    code = status_code(response.status_code, grpc.StatusCode.PERMISSION_DENIED)
    if code == grpc.StatusCode.OK:
        code = grpc.StatusCode.PERMISSION_DENIED
    message = _DENIED_MESSAGE.get(code, "This caller may not do this.")
    # AIP-211: NOT_FOUND carries the same reason whatever the cause.
    reason = "NOT_FOUND" if code == grpc.StatusCode.NOT_FOUND else response.reason
    metadata = None
    patient = caller.principal.kind == principal_pb2.PRINCIPAL_KIND_PATIENT
    if patient and reason in _STATE_REASONS and response.dossier:
        # Consent gives a patient these reasons only for their own record or their child's
        # (after the identity checks): naming the record lets them reach the one call it
        # still takes (ReactivateDossier / AcceptTermsOfUse) when they knew it by INS only.
        metadata = {"dossier": response.dossier}
    return ServiceError(code, reason or "DENIED", message, metadata=metadata)


_STATE_REASONS = frozenset({"DOSSIER_CLOSED", "TERMS_NOT_ACCEPTED"})
