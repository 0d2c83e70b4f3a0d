"""The establishment side of a user assertion: what a hospital information system signs and
sends with each call (`x-dmp-user-assertion`), for the tests, the demo and integrators.

Format (docs/SECURITY.md, "Establishments"): a JWS of type `dmp-user-assertion+jwt`, signed
with the private key of the establishment's connection certificate (ES256 for the dev PKI's
P-256 keys), claims `iss` (FINESS), `sub` (RPPS), `aud` ("dmp-gateway"), `profession`
(TRE_G15), `specialty` (TRE_R38, may be empty), `amr` (RFC 8176: how the user logged in to the
hospital system), `jti` (unique), `iat`/`exp` (at most 5 minutes apart by default) and
`cnf` {"x5t#S256": the connection certificate's thumbprint} (RFC 8705).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kit import clock, pki

HEADER = "x-dmp-user-assertion"
TOKEN_TYPE = "dmp-user-assertion+jwt"  # noqa: S105 - a JWT type, not a secret
AUDIENCE = "dmp-gateway"


def user_assertion(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    rpps: str,
    profession: str,
    specialty: str = "",
    amr: Sequence[str] = ("pwd", "otp"),
    lifetime: timedelta = timedelta(minutes=2),
    now: datetime | None = None,
    jti: str | None = None,
    algorithm: str = "ES256",
    **overrides: Any,
) -> str:
    """A signed assertion of `rpps` for the establishment holding (`cert_pem`, `key_pem`).
    `overrides` replace claims (None removes one)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    issued = (now or clock.now()).replace(microsecond=0)
    claims: dict[str, Any] = {
        "iss": pki.establishment_finess(cert),
        "sub": rpps,
        "aud": AUDIENCE,
        "profession": profession,
        "specialty": specialty,
        "amr": list(amr),
        "jti": jti or uuid.uuid4().hex,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "cnf": {"x5t#S256": pki.x5t_s256(cert)},
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": TOKEN_TYPE})  # type: ignore[arg-type]


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata carrying `token`."""
    return ((HEADER, token),)
