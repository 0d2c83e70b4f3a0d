"""Patient access tokens: Ed25519-signed JWTs issued by identity, verified by the gateway.

The gateway verifies them locally with identity's public key(s), so a request
costs no call to identity; tokens are therefore short-lived (10 minutes by
default) and revocation of a session reaches the gateway through the
`dmp.identity.session.revoked` event (`sid` claim). Only EdDSA is accepted, and
the `typ` header must be `at+jwt` (RFC 9068), so no other JWT of the platform
can be replayed as an access token.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kit import clock
from kit.errors import unauthenticated

ISSUER = "dmp-identity"
AUDIENCE = "dmp-gateway"
ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT type, not a secret
DEFAULT_TTL = timedelta(minutes=10)
_REQUIRED = ("iss", "aud", "sub", "ins", "sid", "jti", "iat", "exp")


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token."""

    account: str
    ins: str
    session_id: str
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and its claims."""

    token: str
    claims: AccessClaims


def key_id(public_key: Ed25519PublicKey) -> str:
    """Stable id of a public key (`kid` header), so verifiers pick the right key on rotation."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")


class AccessTokenIssuer:
    """Signs access tokens with identity's private key."""

    def __init__(self, private_key: Ed25519PrivateKey, *, ttl: timedelta = DEFAULT_TTL) -> None:
        if ttl <= timedelta(0):
            raise ValueError("access token ttl must be positive")
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self.ttl = ttl

    def issue(
        self, *, account: str, ins: str, session_id: str, now: datetime | None = None
    ) -> IssuedToken:
        issued = (now or clock.now()).replace(microsecond=0)
        claims = AccessClaims(
            account=account,
            ins=ins,
            session_id=session_id,
            token_id=uuid.uuid4().hex,
            issued_at=issued,
            expires_at=issued + self.ttl,
        )
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": account,
            "ins": ins,
            "sid": session_id,
            "jti": claims.token_id,
            "iat": int(issued.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        token = jwt.encode(
            payload, self._key, algorithm=ALGORITHM, headers={"kid": self._kid, "typ": TOKEN_TYPE}
        )
        return IssuedToken(token, claims)


class AccessTokenVerifier:
    """Checks signature, type, issuer, audience and expiry; raises UNAUTHENTICATED.

    Every key in `public_keys` is accepted (the current one and the previous
    one during a rotation). Reasons: TOKEN_EXPIRED, TOKEN_INVALID.
    """

    def __init__(
        self, public_keys: Sequence[Ed25519PublicKey], *, leeway: timedelta = timedelta(seconds=5)
    ) -> None:
        if not public_keys:
            raise ValueError("at least one public key is needed")
        self._keys = {key_id(k): k for k in public_keys}
        self._leeway = leeway

    def verify(self, token: str, *, now: datetime | None = None) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise _invalid()
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise _invalid()
        try:
            # Expiry is checked below against an injectable clock, not PyJWT's.
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        try:
            claims = AccessClaims(
                account=_text(payload["sub"]),
                ins=_text(payload["ins"]),
                session_id=_text(payload["sid"]),
                token_id=_text(payload["jti"]),
                issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
                expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise _invalid() from exc
        current = now or clock.now()
        if claims.issued_at > current + self._leeway:
            raise _invalid()
        if claims.expires_at <= current - self._leeway:
            raise unauthenticated("TOKEN_EXPIRED", "The access token has expired.")
        return claims


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("claim is not a non-empty string")
    return value


def _invalid() -> Exception:
    return unauthenticated("TOKEN_INVALID", "The access token is invalid.")


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PKCS#8 PEM file."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a SubjectPublicKeyInfo PEM file."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def public_key_path(private_path: str | Path) -> Path:
    """Where the public half of a key file lives: `<private>.pub`."""
    path = Path(private_path)
    return path.with_name(path.name + ".pub")


def ensure_dev_key_pair(private_path: str | Path) -> Ed25519PrivateKey:
    """Load the key at `private_path`, creating it (mode 0600) and its `.pub` if missing.

    Development and tests only: production keys come from the secret store.
    """
    path = Path(private_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        tmp.replace(path)
    key = load_private_key(path)
    pub = public_key_path(path)
    if not pub.exists():
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return key
