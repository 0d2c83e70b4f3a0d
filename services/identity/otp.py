"""One-time codes: 6 digits from `secrets`, stored only as HMAC-SHA256(pepper,
challenge id + code), single use, short-lived, and a bounded number of wrong
tries after which the challenge dies and the account is throttled.

Wrong tries are counted with an atomic UPDATE … RETURNING, so concurrent
guesses cannot exceed the limit. The caller commits the outcome (a failed try
must be recorded) and raises the matching error afterwards.
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

from services.identity.models import accounts, challenges

LOGIN = "login"
RECOVERY = "recovery"
PENDING = "pending"
USED = "used"
LOCKED = "locked"
CODE_LENGTH = 6


class Outcome(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    EXPIRED = "expired"
    USED = "used"
    LOCKED = "locked"


@dataclass(frozen=True)
class CodeCheck:
    outcome: Outcome
    account_id: str = ""
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class NewChallenge:
    challenge_id: str
    code: str
    expires_at: datetime


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def well_formed(code: str) -> bool:
    return len(code) == CODE_LENGTH and code.isascii() and code.isdigit()


def code_mac(pepper: bytes, challenge_id: str, code: str) -> bytes:
    message = b"otp\x00" + challenge_id.encode() + b"\x00" + code.encode()
    return hmac.new(pepper, message, hashlib.sha256).digest()


async def create_challenge(
    session: AsyncSession,
    *,
    account_id: str,
    purpose: str,
    channel: str,
    pepper: bytes,
    now: datetime,
    ttl: timedelta,
) -> NewChallenge:
    challenge_id = uuid.uuid4().hex
    code = new_code()
    expires = now + ttl
    await session.execute(
        challenges.insert().values(
            id=challenge_id,
            account_id=account_id,
            purpose=purpose,
            code_mac=code_mac(pepper, challenge_id, code),
            channel=channel,
            state=PENDING,
            attempts=0,
            created_at=now,
            expires_at=expires,
        )
    )
    return NewChallenge(challenge_id, code, expires)


def _remaining(until: datetime | None, now: datetime, fallback: timedelta) -> float:
    if until is None or until <= now:
        return fallback.total_seconds()
    return (until - now).total_seconds()


async def check_code(
    session: AsyncSession,
    *,
    challenge_id: str,
    purpose: str,
    code: str,
    pepper: bytes,
    now: datetime,
    max_attempts: int,
    throttle: timedelta,
) -> CodeCheck:
    """Try `code` against the challenge; records the try. Unknown challenge → INVALID."""
    row = (
        await session.execute(
            select(
                challenges.c.account_id,
                challenges.c.purpose,
                challenges.c.code_mac,
                challenges.c.state,
                challenges.c.expires_at,
                accounts.c.throttled_until,
            )
            .join(accounts, accounts.c.id == challenges.c.account_id)
            .where(challenges.c.id == challenge_id)
        )
    ).one_or_none()
    if row is None or row.purpose != purpose:
        return CodeCheck(Outcome.INVALID)
    account_id = row.account_id
    throttled = row.throttled_until is not None and row.throttled_until > now
    if row.state == USED:
        return CodeCheck(Outcome.USED, account_id)
    if row.state == LOCKED or throttled:
        return CodeCheck(Outcome.LOCKED, account_id, _remaining(row.throttled_until, now, throttle))
    if row.expires_at <= now:
        return CodeCheck(Outcome.EXPIRED, account_id)
    if hmac.compare_digest(code_mac(pepper, challenge_id, code), row.code_mac):
        result = await session.execute(
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.state == PENDING)
            .values(state=USED, used_at=now)
        )
        if getattr(result, "rowcount", 0) == 1:
            return CodeCheck(Outcome.OK, account_id)
        return await _settled(session, challenge_id, account_id, now, throttle)
    attempts = (
        await session.execute(
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.state == PENDING)
            .values(attempts=challenges.c.attempts + 1)
            .returning(challenges.c.attempts)
        )
    ).scalar_one_or_none()
    if attempts is None:  # a concurrent try settled the challenge first
        return await _settled(session, challenge_id, account_id, now, throttle)
    if attempts < max_attempts:
        return CodeCheck(Outcome.INVALID, account_id)
    until = now + throttle
    await session.execute(
        update(accounts).where(accounts.c.id == account_id).values(throttled_until=until)
    )
    # Every live challenge of the account dies, so a lockout cannot be dodged.
    await session.execute(
        update(challenges)
        .where(challenges.c.account_id == account_id, challenges.c.state == PENDING)
        .values(state=LOCKED)
    )
    return CodeCheck(Outcome.LOCKED, account_id, throttle.total_seconds())


async def _settled(
    session: AsyncSession, challenge_id: str, account_id: str, now: datetime, throttle: timedelta
) -> CodeCheck:
    state = (
        await session.execute(select(challenges.c.state).where(challenges.c.id == challenge_id))
    ).scalar_one()
    if state == LOCKED:
        return CodeCheck(Outcome.LOCKED, account_id, throttle.total_seconds())
    return CodeCheck(Outcome.USED, account_id)
