"""Password hashing (argon2id) and the password policy.

Hashing runs in a worker thread: argon2 is deliberately slow (tens of ms) and
must not stall the event loop. An unknown identifier is verified against a
dummy hash made with the same parameters, so it costs the same time as a
wrong password and the two cannot be told apart.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict, dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kit.errors import ServiceError, invalid_argument

MIN_LENGTH = 12
MAX_LENGTH = 128


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters; memory_cost in KiB."""

    time_cost: int = 3
    memory_cost: int = 65536
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PasswordService:
    """Hashes and verifies passwords with one set of argon2id parameters."""

    def __init__(self, params: Argon2Params) -> None:
        self.params = params
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=params.hash_len,
            salt_len=params.salt_len,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; None (no account) burns the same time."""
        try:
            self._hasher.verify(stored if stored is not None else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None

    async def verify(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify_sync, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with other parameters (they were raised since)."""
        return self._hasher.check_needs_rehash(stored)


def _classes(password: str) -> int:
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    symbol = any(not c.isalnum() for c in password)
    return sum((lower, upper, digit, symbol))


def _policy_error(rule: str, message: str, field: str) -> ServiceError:
    error = invalid_argument("PASSWORD_POLICY", message, field)
    error.metadata["rule"] = rule
    return error


def check_policy(password: str, identifier: str, field: str = "password") -> None:
    """Refuse weak passwords with INVALID_ARGUMENT PASSWORD_POLICY (metadata `rule`).

    12 to 128 characters, at least 3 of 4 classes (lowercase, uppercase, digit,
    symbol), and not containing the identifier (the INS, or its NIR part).
    """
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise _policy_error(
            "length", f"The password must have {MIN_LENGTH} to {MAX_LENGTH} characters.", field
        )
    if _classes(password) < 3:
        raise _policy_error(
            "classes",
            "The password must mix at least 3 of: lowercase, uppercase, digits, symbols.",
            field,
        )
    folded = password.replace(" ", "").upper()
    ident = identifier.replace(" ", "").upper()
    if ident and (ident in folded or ident[:13] in folded):
        raise _policy_error("identifier", "The password must not contain the identifier.", field)
