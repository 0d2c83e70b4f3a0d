"""Development secrets, created on the first `dmp dev up` and reused afterwards.

They live in `<var>/secrets/` (directory 0700, files 0600) so that a restart
keeps tokens and signed principals valid, and so that nothing secret is ever
committed: production keys come from the deployment, never from here.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRINCIPAL_FILE = "principal.json"
OTP_PEPPER_FILE = "otp_pepper"
TOKEN_SIGNING_KEY_FILE = "token_signing_key.pem"
TOKEN_PUBLIC_KEY_FILE = "token_public_key.pem"


@dataclass(frozen=True)
class DevSecrets:
    """Where the secrets are and what every process needs to know about them."""

    directory: Path
    principal_key_id: str
    principal_key: bytes
    otp_pepper: str

    @property
    def token_signing_key_file(self) -> Path:
        return self.directory / TOKEN_SIGNING_KEY_FILE

    @property
    def token_public_key_file(self) -> Path:
        return self.directory / TOKEN_PUBLIC_KEY_FILE

    def principal_env(self) -> dict[str, str]:
        """The shared principal key, as every process reads it."""
        keys = {self.principal_key_id: base64.b64encode(self.principal_key).decode()}
        return {
            "DMP_PRINCIPAL_KEYS": json.dumps(keys),
            "DMP_PRINCIPAL_KEY_ID": self.principal_key_id,
        }


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only; never overwrite an existing secret."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ensure(path: Path, make: bytes | None) -> None:
    if not path.exists() and make is not None:
        _write_private(path, make)
    path.chmod(0o600)


def load_or_create(directory: Path) -> DevSecrets:
    """The secrets of `directory`, generating whichever is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    principal = directory / PRINCIPAL_FILE
    if not principal.exists():
        payload = {
            "key_id": f"dev-{secrets.token_hex(4)}",
            "key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        _write_private(principal, json.dumps(payload, indent=2).encode())
    _ensure(principal, None)
    _ensure(directory / OTP_PEPPER_FILE, secrets.token_urlsafe(32).encode())

    signing = directory / TOKEN_SIGNING_KEY_FILE
    public = directory / TOKEN_PUBLIC_KEY_FILE
    if not signing.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(
            signing,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        public.unlink(missing_ok=True)
    if not public.exists():
        loaded = serialization.load_pem_private_key(signing.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{signing} is not an Ed25519 private key")
        _write_private(
            public,
            loaded.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
    _ensure(signing, None)
    _ensure(public, None)
    return load(directory)


def load(directory: Path) -> DevSecrets:
    """Read existing secrets (tests use this to sign principals like the platform does)."""
    principal = json.loads((directory / PRINCIPAL_FILE).read_text("utf-8"))
    key = base64.b64decode(principal["key"])
    if len(key) < 32:
        raise ValueError(f"{directory / PRINCIPAL_FILE}: the principal key is shorter than 32 bytes")
    return DevSecrets(
        directory=directory,
        principal_key_id=str(principal["key_id"]),
        principal_key=key,
        otp_pepper=(directory / OTP_PEPPER_FILE).read_text("utf-8").strip(),
    )
