"""Development secrets, created on the first `dmp dev up` and reused afterwards.

They live in `<var>/secrets/` (directory 0700, files 0600) so that a restart
keeps tokens and signed principals valid, and so that nothing secret is ever
committed: production keys come from the deployment, never from here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from kit import tokens

PRINCIPAL_FILE = "principal.json"
RECORDS_KEK_FILE = "records_kek.json"
OTP_PEPPER_FILE = "otp_pepper"
TOKEN_SIGNING_KEY_FILE = "token_signing_key.pem"  # noqa: S105 - a file name


@dataclass(frozen=True)
class DevSecrets:
    """Where the secrets are and what every process needs to know about them."""

    directory: Path
    principal_key_id: str
    principal_key: bytes
    otp_pepper: str
    records_kek_id: str
    records_kek: bytes

    @property
    def token_signing_key_file(self) -> Path:
        return self.directory / TOKEN_SIGNING_KEY_FILE

    @property
    def token_public_key_file(self) -> Path:
        """identity's convention: the public half sits next to the private key as `.pub`."""
        return tokens.public_key_path(self.token_signing_key_file)

    def principal_env(self) -> dict[str, str]:
        """The shared principal key, as every process reads it."""
        keys = {self.principal_key_id: base64.b64encode(self.principal_key).decode()}
        return {
            "DMP_PRINCIPAL_KEYS": json.dumps(keys),
            "DMP_PRINCIPAL_KEY_ID": self.principal_key_id,
        }

    def csrf_env(self) -> dict[str, str]:
        """The JSON door's CSRF key, the same for every gateway replica of the stack (a page's
        token must hold whichever replica answers); derived from the principal key, so no
        new file."""
        key = hmac.new(self.principal_key, b"dmp-http-csrf", hashlib.sha256).digest()
        return {"DMP_HTTP_CSRF_SECRET": base64.b64encode(key).decode()}

    def records_env(self) -> dict[str, str]:
        """The key-encryption key wrapping records' per-record data keys."""
        keks = {self.records_kek_id: base64.b64encode(self.records_kek).decode()}
        return {"DMP_RECORDS_KEKS": json.dumps(keks), "DMP_RECORDS_KEK_ID": self.records_kek_id}


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only; never overwrite an existing secret."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ensure(path: Path, content: bytes) -> None:
    if not path.exists():
        _write_private(path, content)
    path.chmod(0o600)


def _ensure_keyring(path: Path) -> None:
    """A `{"key_id", "key"}` file holding one random 32-byte key."""
    if not path.exists():
        payload = {
            "key_id": f"dev-{secrets.token_hex(4)}",
            "key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        _write_private(path, json.dumps(payload, indent=2).encode())
    path.chmod(0o600)


def _read_keyring(path: Path) -> tuple[str, bytes]:
    content = json.loads(path.read_text("utf-8"))
    key = base64.b64decode(content["key"])
    if len(key) != 32:
        raise ValueError(f"{path}: the key must be 32 bytes")
    return str(content["key_id"]), key


def load_or_create(directory: Path) -> DevSecrets:
    """The secrets of `directory`, generating whichever is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _ensure_keyring(directory / PRINCIPAL_FILE)
    _ensure_keyring(directory / RECORDS_KEK_FILE)
    # identity wants base64 decoding to at least 32 bytes.
    _ensure(directory / OTP_PEPPER_FILE, base64.b64encode(secrets.token_bytes(32)))

    signing = directory / TOKEN_SIGNING_KEY_FILE
    tokens.ensure_dev_key_pair(signing)
    signing.chmod(0o600)
    tokens.public_key_path(signing).chmod(0o600)
    return load(directory)


def load(directory: Path) -> DevSecrets:
    """Read existing secrets (tests use this to sign principals like the platform does)."""
    principal_key_id, principal_key = _read_keyring(directory / PRINCIPAL_FILE)
    records_kek_id, records_kek = _read_keyring(directory / RECORDS_KEK_FILE)
    return DevSecrets(
        directory=directory,
        principal_key_id=principal_key_id,
        principal_key=principal_key,
        otp_pepper=(directory / OTP_PEPPER_FILE).read_text("utf-8").strip(),
        records_kek_id=records_kek_id,
        records_kek=records_kek,
    )
