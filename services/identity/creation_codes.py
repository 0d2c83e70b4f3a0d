"""Creation codes for online sign-up: issued for one INS by a CPAM desk agent or
a professional, shown once, stored as HMAC-SHA256(pepper, INS + code), single
use, valid for a configurable time (72 h by default).

12 characters of Crockford base32 = 60 bits: with the INS binding, a bounded
lifetime and the gateway's rate limits, guessing is out of reach.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import invalid_argument
from services.identity.models import creation_codes

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
# Crockford decoding of look-alike characters.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class Consume(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    EXPIRED = "expired"
    USED = "used"


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, LENGTH, 4))


def normalize(value: str, field: str = "creation_code") -> str:
    """The 12 significant characters (case, dashes and spaces ignored), else MALFORMED."""
    code = value.replace("-", "").replace(" ", "").upper().translate(_ALIASES)
    if len(code) != LENGTH or any(c not in ALPHABET for c in code):
        raise invalid_argument(
            "CREATION_CODE_MALFORMED", "A creation code is 12 letters and digits.", field
        )
    return code


def code_mac(pepper: bytes, ins: str, code: str) -> bytes:
    message = b"creation\x00" + ins.encode() + b"\x00" + code.encode()
    return hmac.new(pepper, message, hashlib.sha256).digest()


async def issue(
    db: AsyncSession, *, ins: str, issued_by: str, pepper: bytes, now: datetime, ttl: timedelta
) -> tuple[str, datetime]:
    """A new code for `ins` (returned once); the previous unused one stops working."""
    await db.execute(
        update(creation_codes)
        .where(
            creation_codes.c.ins == ins,
            creation_codes.c.used_at.is_(None),
            creation_codes.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    code = new_code()
    expires = now + ttl
    await db.execute(
        creation_codes.insert().values(
            id=uuid.uuid4().hex,
            ins=ins,
            code_mac=code_mac(pepper, ins, code),
            issued_by=issued_by[:128],
            created_at=now,
            expires_at=expires,
        )
    )
    return display(code), expires


async def consume(
    db: AsyncSession, *, ins: str, code: str, account_id: str, pepper: bytes, now: datetime
) -> Consume:
    row = (
        await db.execute(
            select(
                creation_codes.c.id,
                creation_codes.c.expires_at,
                creation_codes.c.used_at,
                creation_codes.c.revoked_at,
            ).where(creation_codes.c.code_mac == code_mac(pepper, ins, code))
        )
    ).one_or_none()
    if row is None:
        return Consume.INVALID
    if row.used_at is not None:
        return Consume.USED
    if row.revoked_at is not None or row.expires_at <= now:
        return Consume.EXPIRED
    result = await db.execute(
        update(creation_codes)
        .where(creation_codes.c.id == row.id, creation_codes.c.used_at.is_(None))
        .values(used_at=now, account_id=account_id)
    )
    return Consume.OK if getattr(result, "rowcount", 0) == 1 else Consume.USED
