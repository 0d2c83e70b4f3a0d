"""kit.tokens: the access tokens the gateway verifies locally."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit.errors import ServiceError
from kit.tokens import (
    AUDIENCE,
    ISSUER,
    AccessTokenIssuer,
    AccessTokenVerifier,
    ensure_dev_key_pair,
    load_public_key,
    public_key_path,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def issue(key: Ed25519PrivateKey, **kw: object) -> str:
    return (
        AccessTokenIssuer(key)
        .issue(account="acc", ins="255081416802538", session_id="sid", now=NOW)
        .token
    )


def reason(token: str, verifier: AccessTokenVerifier, now: datetime = NOW) -> str:
    with pytest.raises(ServiceError) as exc:
        verifier.verify(token, now=now)
    assert exc.value.code.name == "UNAUTHENTICATED"
    return exc.value.reason


def test_round_trip_claims() -> None:
    key = Ed25519PrivateKey.generate()
    issued = AccessTokenIssuer(key).issue(
        account="acc", ins="255081416802538", session_id="sid", now=NOW
    )
    claims = AccessTokenVerifier([key.public_key()]).verify(issued.token, now=NOW)
    assert claims == issued.claims
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert payload["iss"] == ISSUER
    assert payload["aud"] == AUDIENCE
    assert set(payload) == {"iss", "aud", "sub", "ins", "sid", "jti", "iat", "exp"}
    assert payload["exp"] - payload["iat"] == 600
    assert jwt.get_unverified_header(issued.token)["alg"] == "EdDSA"


def test_expired() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = AccessTokenVerifier([key.public_key()])
    assert reason(issue(key), verifier, NOW + timedelta(minutes=11)) == "TOKEN_EXPIRED"


def test_other_key_tampered_and_garbage_are_invalid() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = AccessTokenVerifier([key.public_key()])
    assert reason(issue(Ed25519PrivateKey.generate()), verifier) == "TOKEN_INVALID"
    header, payload, sig = issue(key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["ins"] = "185057800608491"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert reason(f"{header}.{forged}.{sig}", verifier) == "TOKEN_INVALID"
    assert reason("garbage", verifier) == "TOKEN_INVALID"
    unsigned = jwt.encode({"sub": "acc"}, key=None, algorithm="none")  # type: ignore[arg-type]
    assert reason(unsigned, verifier) == "TOKEN_INVALID"


def test_rotation_accepts_every_listed_key() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = AccessTokenVerifier([new.public_key(), old.public_key()])
    verifier.verify(issue(old), now=NOW)
    verifier.verify(issue(new), now=NOW)


def test_dev_key_pair_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    key = ensure_dev_key_pair(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_dev_key_pair(path).public_key() == key.public_key()  # loaded, not regenerated
    public = load_public_key(public_key_path(path))
    AccessTokenVerifier([public]).verify(issue(key), now=NOW)
