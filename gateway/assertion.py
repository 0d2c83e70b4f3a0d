"""End-user assertions of establishments: who, at the hospital, is making this call.

An establishment's information system (hospital, clinic, laboratory) connects on the card
port with its own certificate and sends, with every call, a short-lived JWT naming the
professional at the keyboard (metadata `x-dmp-user-assertion`), signed with the private key
of that same certificate. The gateway accepts the call as that professional "via" the
establishment only if, in this order:

1. the token is a JWT of type `dmp-user-assertion+jwt`, at most `MAX_BYTES` (INVALID_ASSERTION);
2. its signature verifies with the connection certificate's public key, with the one
   algorithm that key type allows (ES256 for P-256, ...; never `none`, never HMAC)
   (ASSERTION_BAD_SIGNATURE): a token signed by another establishment's key fails here;
3. its `cnf` claim names the connection certificate (`x5t#S256`, RFC 8705) (ASSERTION_UNBOUND):
   an assertion minted for another certificate of the same key is not accepted;
4. `iss` is the establishment's FINESS and `aud` the gateway (ASSERTION_ISSUER_MISMATCH,
   ASSERTION_AUDIENCE_MISMATCH);
5. it is valid now on the platform clock with a small leeway (ASSERTION_NOT_YET_VALID,
   ASSERTION_EXPIRED) and lives at most `max_lifetime_s` (ASSERTION_LIFETIME_TOO_LONG);
6. its `jti` was not seen before within its lifetime (ASSERTION_REPLAYED); the replay cache
   is bounded and refuses when full (UNAVAILABLE ASSERTION_REPLAY_CACHE_FULL) rather than
   forget an id that is still valid.

The claims `sub` (RPPS), `profession`, `specialty` and `amr` (how the establishment
authenticated the user, RFC 8176 values) are returned; the caller (`gateway.authn`) then
checks the RPPS is on the establishment's staff and the asserted profession is the
directory's. No cryptography is written here: PyJWT verifies, with an explicit algorithm.

Replay cache: per gateway replica, in memory. Because of the binding (3), only the holder of
the establishment's TLS private key can present an assertion at all, so a replay across
replicas is the establishment replaying its own assertion within its lifetime (at most
5 minutes), not a third party's theft; docs/SECURITY.md explains the choice and its limit.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from kit import clock as kit_clock
from kit import pki, rpps
from kit.errors import ServiceError, unauthenticated, unavailable

HEADER = "x-dmp-user-assertion"
TOKEN_TYPE = "dmp-user-assertion+jwt"  # noqa: S105 - a JWT type, not a secret
AUDIENCE = "dmp-gateway"
MAX_BYTES = 4096
_REQUIRED = ("iss", "sub", "aud", "jti", "iat", "exp", "cnf", "profession", "amr")
_JTI = re.compile(r"[A-Za-z0-9._~-]{16,128}")
_CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_AMR = re.compile(r"[a-z0-9_]{1,32}")
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class UserAssertion:
    """The verified claims of one assertion."""

    rpps: str
    profession_code: str
    specialty_code: str
    amr: tuple[str, ...]
    jti: str
    issued_at: datetime
    expires_at: datetime


def algorithm_for(cert: x509.Certificate) -> str:
    """The one JWS algorithm accepted for this certificate's key type."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVES.get(key.curve.name)
        if alg is not None:
            return alg
    if isinstance(key, rsa.RSAPublicKey):
        return "PS256"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise ValueError("unsupported certificate key type")


def _refused(reason: str, message: str) -> ServiceError:
    return unauthenticated(reason, message)


def _malformed(detail: str = "The user assertion is malformed.") -> ServiceError:
    return _refused("INVALID_ASSERTION", detail)


class ReplayCache:
    """Assertion ids seen, each kept until its assertion has expired (plus the leeway).

    Bounded: when `max_entries` ids are still valid, a new one is refused (fail closed)
    instead of evicting an id that could then be replayed."""

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = kit_clock.timestamp):
        self._max = max_entries
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._until)

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            until, key = heapq.heappop(self._heap)
            if self._until.get(key) == until:
                del self._until[key]

    def remember(self, issuer: str, jti: str, forget_at: float) -> None:
        """Record `jti` of `issuer`; ASSERTION_REPLAYED if it is already there."""
        now = self._clock()
        self._prune(now)
        key = (issuer, jti)
        if key in self._until:
            raise _refused("ASSERTION_REPLAYED", "This user assertion was already used.")
        if len(self._until) >= self._max:
            raise unavailable(
                "ASSERTION_REPLAY_CACHE_FULL",
                "User assertions cannot be checked for replay now; retry later.",
            )
        self._until[key] = forget_at
        heapq.heappush(self._heap, (forget_at, key))


class AssertionVerifier:
    """Verifies an establishment's user assertion against its connection certificate."""

    def __init__(
        self,
        replay: ReplayCache,
        *,
        max_lifetime_s: float = 300.0,
        leeway_s: float = 5.0,
    ) -> None:
        self.replay = replay
        self.max_lifetime = timedelta(seconds=max_lifetime_s)
        self.leeway = timedelta(seconds=leeway_s)

    def verify(
        self, token: str, cert: x509.Certificate, finess: str, *, now: datetime | None = None
    ) -> UserAssertion:
        if len(token) > MAX_BYTES:
            raise _malformed("The user assertion is too large.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _malformed() from exc
        if header.get("typ") != TOKEN_TYPE:
            raise _malformed(f"The user assertion's type must be {TOKEN_TYPE}.")
        try:
            algorithm = algorithm_for(cert)
        except ValueError as exc:  # a key type no JWS algorithm fits: nothing can verify
            raise _refused(
                "ASSERTION_BAD_SIGNATURE",
                "This connection's certificate key cannot sign user assertions.",
            ) from exc
        try:
            # Expiry and issue time are checked below on the platform clock, not PyJWT's.
            payload: dict[str, Any] = jwt.decode(
                token,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=[algorithm],
                options={
                    "require": list(_REQUIRED),
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            raise _refused(
                "ASSERTION_BAD_SIGNATURE",
                "The user assertion is not signed with this connection's certificate key.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise _malformed() from exc
        self._check_binding(payload, cert)
        if payload["iss"] != finess:
            raise _refused(
                "ASSERTION_ISSUER_MISMATCH",
                "The user assertion's issuer is not this establishment's FINESS.",
            )
        audience = payload["aud"]
        if audience != AUDIENCE and not (isinstance(audience, list) and audience == [AUDIENCE]):
            raise _refused(
                "ASSERTION_AUDIENCE_MISMATCH", f"The user assertion's audience must be {AUDIENCE}."
            )
        claims = _claims(payload)
        self._check_time(claims, now or kit_clock.now())
        self.replay.remember(finess, claims.jti, (claims.expires_at + self.leeway).timestamp())
        return claims

    @staticmethod
    def _check_binding(payload: dict[str, Any], cert: x509.Certificate) -> None:
        cnf = payload["cnf"]
        bound = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
        if not isinstance(bound, str) or bound != pki.x5t_s256(cert):
            raise _refused(
                "ASSERTION_UNBOUND",
                "The user assertion is not bound to this connection's certificate (cnf x5t#S256).",
            )

    def _check_time(self, claims: UserAssertion, now: datetime) -> None:
        if claims.issued_at > now + self.leeway:
            raise _refused("ASSERTION_NOT_YET_VALID", "The user assertion is issued in the future.")
        if claims.expires_at <= now - self.leeway:
            raise _refused("ASSERTION_EXPIRED", "The user assertion has expired.")
        if claims.expires_at - claims.issued_at > self.max_lifetime:
            raise _refused(
                "ASSERTION_LIFETIME_TOO_LONG",
                f"A user assertion lives at most {int(self.max_lifetime.total_seconds())} s.",
            )


def _claims(payload: dict[str, Any]) -> UserAssertion:
    try:
        subject = payload["sub"]
        jti = payload["jti"]
        profession = payload["profession"]
        specialty = payload.get("specialty", "")
        amr = payload["amr"]
        if not (isinstance(subject, str) and rpps.SHAPE.fullmatch(subject)):
            raise ValueError("sub")
        if not (isinstance(jti, str) and _JTI.fullmatch(jti)):
            raise ValueError("jti")
        if not (isinstance(profession, str) and _CODE.fullmatch(profession)):
            raise ValueError("profession")
        if not (isinstance(specialty, str) and (specialty == "" or _CODE.fullmatch(specialty))):
            raise ValueError("specialty")
        if not (
            isinstance(amr, list)
            and 0 < len(amr) <= 5
            and all(isinstance(a, str) and _AMR.fullmatch(a) for a in amr)
        ):
            raise ValueError("amr")
        iat, exp = payload["iat"], payload["exp"]
        if type(iat) is not int or type(exp) is not int:  # bool is an int, not a time
            raise ValueError("iat/exp")
        return UserAssertion(
            rpps=subject,
            profession_code=profession,
            specialty_code=specialty,
            amr=tuple(amr),
            jti=jti,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
        )
    except (ValueError, OverflowError, OSError) as exc:
        raise _malformed(f"The user assertion's claims are malformed ({exc}).") from exc
