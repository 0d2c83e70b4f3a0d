"""Who is calling: a verified client certificate (mTLS port) or a patient bearer token.

The TLS stack has already checked the chain against the configured CA on the
mTLS port; here we check validity dates and the revocation list ourselves
(from the peer certificate in the auth context) and map the card through
`identity.ResolveCertificate`. Answers are cached by certificate bytes, so a
card costs one identity call per cache period, not one per RPC.

Staff and service certificates that identity does not know are mapped from
their subject fields (the CA vouches for them); a professional card must be in
the directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from cryptography import x509

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit import pki
from kit.clients import InternalCredentials
from kit.errors import permission_denied, unauthenticated, unavailable
from kit.logs import get_logger
from kit.tokens import AccessTokenVerifier

log = get_logger(__name__)
P = principal_pb2
RESOLVE = "/dmp.identity.v1.IdentityService/ResolveCertificate"
_ROLE_NAMES = {
    value: name.removeprefix("PROFESSIONAL_ROLE_").lower()
    for name, value in identity_pb2.ProfessionalRole.items()
    if value
}
_STAFF_ROLES = {"administratif", "guichet_amo"}
_SERVICE_ROLES = {"alimentation_amo"}


@dataclass(frozen=True)
class Caller:
    """A verified principal and the key its rate limit and decisions are cached under."""

    key: str
    principal: principal_pb2.Principal


def load_crl_serials(path: str, ca_pem: bytes) -> frozenset[int]:
    """Revoked serial numbers of a CRL signed by the client CA."""
    if not path:
        return frozenset()
    with open(path, "rb") as handle:
        crl = x509.load_pem_x509_crl(handle.read())
    ca = x509.load_pem_x509_certificate(ca_pem)
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise ValueError("the CRL is not signed by the client CA")
    return frozenset(entry.serial_number for entry in crl)


class Authenticator:
    def __init__(
        self,
        identity: identity_pb2_grpc.IdentityServiceStub,
        credentials: InternalCredentials,
        verifier: AccessTokenVerifier | None,
        *,
        revoked: frozenset[int] = frozenset(),
        cache_ttl_s: float = 300.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identity = identity
        self._credentials = credentials
        self._verifier = verifier
        self.revoked = revoked
        self._ttl = cache_ttl_s
        self._timeout = timeout_s
        self._clock = clock
        self._certs: dict[bytes, tuple[float, Caller]] = {}

    async def authenticate(
        self, context: grpc.aio.ServicerContext, authorization: str | None
    ) -> Caller | None:
        """The caller, None when there is no credential; UNAUTHENTICATED when it is invalid."""
        pems = context.auth_context().get("x509_pem_cert")
        if pems:
            return await self._certificate(pems[0])
        if authorization is not None:
            return self._token(authorization)
        return None

    def _token(self, authorization: str) -> Caller:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token or self._verifier is None:
            raise unauthenticated("TOKEN_INVALID", "The access token is invalid.")
        claims = self._verifier.verify(token.strip())
        principal = P.Principal(
            kind=P.PRINCIPAL_KIND_PATIENT,
            subject=claims.account,
            patient_ins=claims.ins,
            session_id=claims.session_id,
        )
        return Caller(f"patient:{claims.account}:{claims.session_id}", principal)

    async def _certificate(self, pem: bytes) -> Caller:
        now = self._clock()
        cached = self._certs.get(pem)
        if cached is not None and cached[0] > now:
            return cached[1]
        cert = x509.load_pem_x509_certificate(pem)
        current = datetime.now(UTC)
        if not cert.not_valid_before_utc <= current < cert.not_valid_after_utc:
            raise unauthenticated("CERTIFICATE_EXPIRED", "The client certificate is not valid now.")
        if cert.serial_number in self.revoked:
            raise unauthenticated("CERTIFICATE_REVOKED", "The client certificate is revoked.")
        caller = await self._resolve(cert)
        # Never cache past the certificate's own end of validity.
        remaining = (cert.not_valid_after_utc - current).total_seconds()
        self._certs[pem] = (now + min(self._ttl, remaining), caller)
        return caller

    async def _resolve(self, cert: x509.Certificate) -> Caller:
        sha = pki.fingerprint(cert)
        fields = pki.card_fields(cert)
        try:
            entry = await self._identity.ResolveCertificate(
                identity_pb2.ResolveCertificateRequest(sha256_fingerprint=sha),
                metadata=self._credentials.metadata(RESOLVE),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return self._unregistered(sha, fields, cert)
            log.warning("resolve_certificate_failed", code=exc.code().name)
            raise unavailable("IDENTITY_UNAVAILABLE", "Cannot verify the certificate now.") from exc
        roles = [_ROLE_NAMES.get(r, "") for r in entry.roles]
        return Caller(
            f"cert:{sha}",
            P.Principal(
                kind=_kind(fields.kind, roles),
                subject=entry.rpps,
                rpps=entry.rpps,
                profession_code=entry.profession_code,
                specialty_code=entry.specialty_code,
                roles=[r for r in roles if r],
            ),
        )

    def _unregistered(self, sha: str, fields: pki.CardFields, cert: x509.Certificate) -> Caller:
        if fields.kind not in ("staff", "service") or not fields.roles:
            raise unauthenticated("CERTIFICATE_UNKNOWN", "This card is not in the directory.")
        kind = _kind(fields.kind, list(fields.roles))
        if kind == P.PRINCIPAL_KIND_PROFESSIONAL:
            raise permission_denied("ROLE_UNKNOWN", "This card carries no known role.")
        return Caller(
            f"cert:{sha}",
            P.Principal(
                kind=kind,
                subject=cert.subject.rfc4514_string(),
                rpps=fields.rpps,
                roles=list(fields.roles),
            ),
        )


def _kind(card_kind: str, roles: list[str]) -> principal_pb2.PrincipalKind.ValueType:
    if card_kind == "service" or _SERVICE_ROLES.intersection(roles):
        return P.PRINCIPAL_KIND_SERVICE
    if card_kind == "staff" or _STAFF_ROLES.intersection(roles):
        return P.PRINCIPAL_KIND_STAFF
    return P.PRINCIPAL_KIND_PROFESSIONAL
