"""Who is calling: a verified client certificate (mTLS port) or a patient bearer token.

The TLS stack has already checked the chain against the configured CA on the
mTLS port; here we check validity dates and the revocation list ourselves
(from the peer certificate in the auth context) and map the card through
`identity.ResolveCertificate`. Answers are cached by certificate bytes, so a
card costs one identity call per cache period, not one per RPC; a CRL reload
drops the cached answers of newly revoked serials at once (`set_revoked`).

Every certificate must be registered in identity's directory, whatever its
kind: a professional's CPS card under its RPPS entry, a staff or service card
as a card entry. What a card may do (kind, roles) comes from the directory,
never from the certificate's own subject fields, so a certificate the CA
signed but nobody registered is refused (CERTIFICATE_UNKNOWN).

A patient token is refused once identity revoked its session
(`gateway.revocations`), before any decision is looked up or cached.

One credential per call: two `authorization` headers, or a bearer token next
to a client certificate, are refused (CREDENTIALS_AMBIGUOUS) rather than
letting one of them silently win.

An establishment's certificate (a hospital information system) is no caller by
itself: each call must carry a user assertion (`gateway.assertion`) naming one
of its staff, else ASSERTION_REQUIRED. The caller is then that professional
"via" the establishment: the RPPS must be a member of the establishment's
staff in identity's directory (GetEstablishmentMember, cached like
certificates; ASSERTION_USER_NOT_STAFF), the asserted profession and specialty
must be the directory's (ASSERTION_PROFESSION_MISMATCH), and the principal
takes the directory's profession, specialty and roles, so consent decides on
that professional's rights and the access log names both. An assertion sent
on any other connection (a personal CPS card, the patient port) is refused
(ASSERTION_UNEXPECTED): it would otherwise be ignored, and a client relying on
it would act under another identity than it believes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from cryptography import x509

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from gateway.assertion import AssertionVerifier, UserAssertion
from gateway.replay import SharedReplayStore
from gateway.revocations import RevokedSessions
from kit import clock as kit_clock
from kit import pki
from kit.clients import InternalCredentials
from kit.errors import permission_denied, unauthenticated, unavailable
from kit.logs import get_logger
from kit.tokens import AccessTokenVerifier
from kit.tracing import TRACEPARENT

log = get_logger(__name__)
P = principal_pb2
ID = identity_pb2
RESOLVE = "/dmp.identity.v1.IdentityService/ResolveCertificate"
MEMBER = "/dmp.identity.v1.IdentityService/GetEstablishmentMember"
_MAX_MEMBERS = 100_000
_ROLE_NAMES: dict[int, str] = {
    value: name.removeprefix("PROFESSIONAL_ROLE_").lower()
    for name, value in ID.ProfessionalRole.items()
    if value
}
# A directory professional holding a staff or service role acts as staff / service (as before
# every card was registered).
_STAFF_ROLES = frozenset({"administratif", "guichet_amo", "info_service"})
_SERVICE_ROLES = frozenset({"alimentation_amo"})
_CARD_KINDS = {
    ID.CARD_KIND_STAFF: P.PRINCIPAL_KIND_STAFF,
    ID.CARD_KIND_SERVICE: P.PRINCIPAL_KIND_SERVICE,
}


@dataclass(frozen=True)
class EstablishmentConnection:
    """A registered establishment's certificate on the connection: no caller until a user
    assertion names one of its staff."""

    finess: str
    display_name: str
    cert: x509.Certificate
    sha256: str


@dataclass(frozen=True)
class Caller:
    """A verified principal and the key its rate limit and decisions are cached under."""

    key: str
    principal: principal_pb2.Principal
    establishment: EstablishmentConnection | None = None


def ambiguous() -> Exception:
    return unauthenticated(
        "CREDENTIALS_AMBIGUOUS", "Present exactly one credential: a card or one bearer token."
    )


class Authenticator:
    def __init__(
        self,
        identity: identity_pb2_grpc.IdentityServiceStub,
        credentials: InternalCredentials,
        verifier: AccessTokenVerifier | None,
        *,
        sessions: RevokedSessions,
        assertions: AssertionVerifier | None = None,
        shared_replay: SharedReplayStore | None = None,
        member_cache_ttl_s: float = 60.0,
        revoked: frozenset[int] = frozenset(),
        cache_ttl_s: float = 300.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = kit_clock.monotonic,
    ) -> None:
        self._identity = identity
        self._credentials = credentials
        self._verifier = verifier
        self.sessions = sessions
        self.assertions = assertions
        self.shared_replay = shared_replay
        self._member_ttl = member_cache_ttl_s
        # (FINESS, RPPS) -> (expires, member entry)
        self._members: dict[tuple[str, str], tuple[float, identity_pb2.EstablishmentMember]] = {}
        self.revoked = revoked
        self._ttl = cache_ttl_s
        self._timeout = timeout_s
        self._clock = clock
        # certificate PEM -> (expires, caller, serial number)
        self._certs: dict[bytes, tuple[float, Caller, int]] = {}

    def set_revoked(self, serials: frozenset[int]) -> int:
        """Install a new CRL's serials; forget cached answers of revoked cards. Returns how many
        cached answers were dropped."""
        self.revoked = serials
        stale = [pem for pem, (_, _, serial) in self._certs.items() if serial in serials]
        for pem in stale:
            self._certs.pop(pem, None)
        return len(stale)

    async def authenticate(
        self,
        pems: Sequence[bytes],
        authorizations: Sequence[str],
        traceparent: str | None = None,
        assertions: Sequence[str] = (),
    ) -> Caller | None:
        """The caller, None when there is no credential; UNAUTHENTICATED when it is invalid
        or when more than one credential is presented. `pems`: the client certificate the
        TLS stack verified (gRPC's auth context `x509_pem_cert`; none on the JSON door)."""
        if len(authorizations) > 1 or (pems and authorizations) or len(assertions) > 1:
            raise ambiguous()
        if pems:
            caller = await self._certificate(pems[0], traceparent)
            if caller.establishment is not None:
                return await self._via(caller.establishment, assertions, traceparent)
            if assertions:
                raise unexpected_assertion()
            return caller
        if assertions:
            raise unexpected_assertion()
        if authorizations:
            return self._token(authorizations[0])
        return None

    async def _via(
        self,
        connection: EstablishmentConnection,
        assertions: Sequence[str],
        traceparent: str | None,
    ) -> Caller:
        """The professional an establishment's call acts for (see the module docstring)."""
        if not assertions:
            raise unauthenticated(
                "ASSERTION_REQUIRED",
                "An establishment's call must carry a user assertion (x-dmp-user-assertion).",
            )
        if self.assertions is None:
            raise unauthenticated(
                "ASSERTION_REQUIRED", "This gateway accepts no establishment connection."
            )
        claims = self.assertions.verify(assertions[0], connection.cert, connection.finess)
        if self.shared_replay is not None:  # once across the replicas, not only this one
            await self.shared_replay.claim(connection.finess, claims.jti)
        member = await self._member(connection.finess, claims.rpps, traceparent)
        entry = member.professional
        if (claims.profession_code, claims.specialty_code) != (
            entry.profession_code,
            entry.specialty_code,
        ):
            raise permission_denied(
                "ASSERTION_PROFESSION_MISMATCH",
                "The asserted profession or specialty is not the directory's for this RPPS.",
            )
        roles = _roles(entry.roles)
        principal = P.Principal(
            kind=_professional_kind(roles),
            subject=entry.rpps,
            rpps=entry.rpps,
            profession_code=entry.profession_code,
            specialty_code=entry.specialty_code,
            roles=roles,
            establishment=P.EstablishmentContext(
                finess=connection.finess,
                display_name=connection.display_name,
                user_authentication=",".join(claims.amr),
            ),
        )
        return Caller(_via_key(connection, claims), principal)

    async def _member(
        self, finess: str, rpps: str, traceparent: str | None
    ) -> identity_pb2.EstablishmentMember:
        now = self._clock()
        cached = self._members.get((finess, rpps))
        if cached is not None and cached[0] > now:
            return cached[1]
        metadata: tuple[tuple[str, str | bytes], ...] = self._credentials.metadata(MEMBER)
        if traceparent:
            metadata = (*metadata, (TRACEPARENT, traceparent))
        try:
            member: identity_pb2.EstablishmentMember = await self._identity.GetEstablishmentMember(
                ID.GetEstablishmentMemberRequest(name=f"establishments/{finess}/members/{rpps}"),
                metadata=metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise permission_denied(
                    "ASSERTION_USER_NOT_STAFF",
                    "The asserted professional is not on this establishment's staff.",
                ) from exc
            log.warning("establishment_member_failed", code=exc.code().name)
            raise unavailable("IDENTITY_UNAVAILABLE", "Cannot verify the user now.") from exc
        if len(self._members) >= _MAX_MEMBERS:
            self._members.clear()
        self._members[(finess, rpps)] = (now + self._member_ttl, member)
        return member

    def _token(self, authorization: str) -> Caller:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token or self._verifier is None:
            raise unauthenticated("TOKEN_INVALID", "The access token is invalid.")
        claims = self._verifier.verify(token.strip())
        # After the signature: only a token identity issued can tell us its session.
        self.sessions.check(claims.session_id)
        principal = P.Principal(
            kind=P.PRINCIPAL_KIND_PATIENT,
            subject=claims.account,
            patient_ins=claims.ins,
            session_id=claims.session_id,
        )
        return Caller(f"patient:{claims.account}:{claims.session_id}", principal)

    async def _certificate(self, pem: bytes, traceparent: str | None) -> Caller:
        now = self._clock()
        cached = self._certs.get(pem)
        if cached is not None and cached[0] > now:
            return cached[1]
        cert = x509.load_pem_x509_certificate(pem)
        current = kit_clock.now()
        if not cert.not_valid_before_utc <= current < cert.not_valid_after_utc:
            raise unauthenticated("CERTIFICATE_EXPIRED", "The client certificate is not valid now.")
        if cert.serial_number in self.revoked:
            raise unauthenticated("CERTIFICATE_REVOKED", "The client certificate is revoked.")
        caller = await self._resolve(cert, traceparent)
        # Never cache past the certificate's own end of validity.
        remaining = (cert.not_valid_after_utc - current).total_seconds()
        self._certs[pem] = (now + min(self._ttl, remaining), caller, cert.serial_number)
        return caller

    async def _resolve(self, cert: x509.Certificate, traceparent: str | None) -> Caller:
        sha = pki.fingerprint(cert)
        metadata: tuple[tuple[str, str | bytes], ...] = self._credentials.metadata(RESOLVE)
        if traceparent:  # identity's span joins the call's trace, under the gateway's span
            metadata = (*metadata, (TRACEPARENT, traceparent))
        try:
            holder = await self._identity.ResolveCertificate(
                ID.ResolveCertificateRequest(sha256_fingerprint=sha),
                metadata=metadata,
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise unauthenticated(
                    "CERTIFICATE_UNKNOWN", "This card is not in the directory."
                ) from exc
            log.warning("resolve_certificate_failed", code=exc.code().name)
            raise unavailable("IDENTITY_UNAVAILABLE", "Cannot verify the certificate now.") from exc
        which = holder.WhichOneof("holder")
        if which == "professional" and holder.kind == ID.CARD_KIND_PROFESSIONAL:
            entry = holder.professional
            roles = _roles(entry.roles)
            return Caller(
                f"cert:{sha}",
                P.Principal(
                    kind=_professional_kind(roles),
                    subject=entry.rpps,
                    rpps=entry.rpps,
                    profession_code=entry.profession_code,
                    specialty_code=entry.specialty_code,
                    roles=roles,
                ),
            )
        if which == "establishment" and holder.kind == ID.CARD_KIND_ESTABLISHMENT:
            found = holder.establishment
            connection = EstablishmentConnection(found.finess, found.display_name, cert, sha)
            # Not a principal: `_via` builds one per call from the call's user assertion.
            return Caller(f"establishment:{sha}", P.Principal(), connection)
        kind = _CARD_KINDS.get(holder.kind)
        if which == "card" and kind is not None:
            card = holder.card
            return Caller(
                f"cert:{sha}",
                P.Principal(
                    kind=kind,
                    # The holder's name as the CA wrote it: what services already record.
                    subject=cert.subject.rfc4514_string(),
                    rpps=card.rpps,
                    roles=_roles(card.roles),
                ),
            )
        log.warning("resolve_certificate_unexpected", kind=holder.kind, holder=which)
        raise permission_denied("CARD_KIND_UNKNOWN", "This card is of no kind the edge accepts.")


def unexpected_assertion() -> Exception:
    return unauthenticated(
        "ASSERTION_UNEXPECTED",
        "A user assertion is only accepted on an establishment's connection.",
    )


def _via_key(connection: EstablishmentConnection, claims: UserAssertion) -> str:
    """Rate limit and decision cache key: the establishment, the user and how they logged in
    (the principal carries it)."""
    return f"establishment:{connection.sha256}:{claims.rpps}:{','.join(claims.amr)}"


def _roles(values: Sequence[int]) -> list[str]:
    return [name for name in (_ROLE_NAMES.get(v, "") for v in values) if name]


def _professional_kind(roles: list[str]) -> principal_pb2.PrincipalKind.ValueType:
    if _SERVICE_ROLES.intersection(roles):
        return P.PRINCIPAL_KIND_SERVICE
    if _STAFF_ROLES.intersection(roles):
        return P.PRINCIPAL_KIND_STAFF
    return P.PRINCIPAL_KIND_PROFESSIONAL
