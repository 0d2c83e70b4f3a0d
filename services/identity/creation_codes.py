"""Creation and activation codes: issued for one INS by a CPAM desk agent, a
professional (on screen or in a printed letter) or a DMP Info Service agent
(reissue), shown once, stored as HMAC-SHA256(pepper, INS + code), single use,
valid for a configurable time (72 h on screen, 6 weeks in a letter).

12 characters of Crockford base32 = 60 bits: with the INS binding, a bounded
lifetime and the gateway's rate limits, guessing is out of reach. A keyed hash
rather than argon2id: the code is random (60 bits, not a human choice), so a
slow hash adds nothing against guessing, and the lookup needs a deterministic
key; without the pepper a stolen table is useless.

Issuing never cancels another code of the same INS: a professional who asks
for a code must not be able to take away the one a desk handed the patient
(nor learn, by a refusal, that an account exists). Only a support reissue
replaces the previous unused reissue of the same account.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import invalid_argument
from services.identity.models import creation_codes

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
# Crockford decoding of look-alike characters.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


CREATION = "creation"
LETTER = "letter"
REISSUE = "reissue"


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


@dataclass(frozen=True)
class Consumed:
    outcome: Consume
    purpose: str = CREATION
    #: For a reissue: the account it re-activates.
    account_id: str = ""


async def issue(
    db: AsyncSession,
    *,
    ins: str,
    issued_by: str,
    pepper: bytes,
    now: datetime,
    ttl: timedelta,
    purpose: str = CREATION,
    account_id: str | None = None,
) -> tuple[str, datetime]:
    """A new code for `ins` (returned once). Other codes keep working, except that a reissue
    replaces the account's previous unused reissue."""
    if purpose == REISSUE:
        await db.execute(
            update(creation_codes)
            .where(
                creation_codes.c.ins == ins,
                creation_codes.c.purpose == REISSUE,
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
            purpose=purpose,
            account_id=account_id,
        )
    )
    return display(code), expires


async def consume(
    db: AsyncSession, *, ins: str, code: str, account_id: str, pepper: bytes, now: datetime
) -> Consumed:
    """Use the code; a sign-up code records `account_id`, a reissue keeps its own."""
    row = (
        await db.execute(
            select(
                creation_codes.c.id,
                creation_codes.c.expires_at,
                creation_codes.c.used_at,
                creation_codes.c.revoked_at,
                creation_codes.c.purpose,
                creation_codes.c.account_id,
            ).where(creation_codes.c.code_mac == code_mac(pepper, ins, code))
        )
    ).one_or_none()
    if row is None:
        return Consumed(Consume.INVALID)
    if row.used_at is not None:
        return Consumed(Consume.USED)
    if row.revoked_at is not None or row.expires_at <= now:
        return Consumed(Consume.EXPIRED)
    reissue = row.purpose == REISSUE
    result = await db.execute(
        update(creation_codes)
        .where(creation_codes.c.id == row.id, creation_codes.c.used_at.is_(None))
        .values(used_at=now, account_id=row.account_id if reissue else account_id)
    )
    if getattr(result, "rowcount", 0) != 1:
        return Consumed(Consume.USED)
    return Consumed(Consume.OK, row.purpose, (row.account_id or "") if reissue else "")
