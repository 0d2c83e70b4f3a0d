"""Wrong passwords counted per login identifier; too many throttle it (LOGIN_THROTTLED).

Without this, online password guessing was bounded only by argon2's cost. The
identifier (the normalized INS) is kept only as HMAC-SHA256(pepper, "login" | INS),
whether or not an account has it, so the table does not list who was tried to
anyone without the pepper (replacing the pepper forgets every counter).

No oracle: counting does not look at the account, and a throttled identifier is
refused before its password is checked, so an unknown identifier, a wrong
password and the right one get the same answer (and cost no argon2 run).

Every attempt is charged before its password is checked, in its own committed
transaction that starts with the write (the row is locked on PostgreSQL, the
database on SQLite): concurrent guesses cannot exceed the limit. With
`max_failures` attempts charged in the window, the next one engages the
throttle. A right password deletes the row, so the count starts again. When a
new row is created a few expired ones are deleted, so identifiers sprayed by an
attacker do not pile up.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import UTCDateTime, transaction
from kit.logs import get_logger
from services.identity.models import login_failures

log = get_logger(__name__)
PRUNE_BATCH = 100
T = login_failures


@dataclass(frozen=True)
class Limits:
    max_failures: int
    window: timedelta
    throttle: timedelta


def identifier_mac(pepper: bytes, identifier: str) -> bytes:
    return hmac.new(pepper, b"login\x00" + identifier.encode(), hashlib.sha256).digest()


async def charge(
    sessions: async_sessionmaker[AsyncSession], mac: bytes, now: datetime, limits: Limits
) -> float | None:
    """Count one attempt; the seconds to wait if the identifier is throttled, else None."""
    for last_try in (False, True):
        try:
            async with transaction(sessions) as db:
                retry_after_s, created = await _charge(db, mac, now, limits)
            break
        except IntegrityError:  # a concurrent first attempt created the row: count on it
            if last_try:
                raise
    if created:
        await _prune(sessions, now, limits.window)
    return retry_after_s


async def clear(sessions: async_sessionmaker[AsyncSession], mac: bytes) -> None:
    """The right password: forget the identifier's attempts."""
    async with transaction(sessions) as db:
        await db.execute(delete(T).where(T.c.identifier_mac == mac))


async def _charge(
    db: AsyncSession, mac: bytes, now: datetime, limits: Limits
) -> tuple[float | None, bool]:
    at = literal(now, UTCDateTime)
    # A window that is over, or a throttle served, starts a new count.
    fresh = or_(T.c.window_start <= now - limits.window, T.c.throttled_until <= now)
    attempts = (
        await db.execute(
            update(T)
            .where(
                T.c.identifier_mac == mac,
                or_(T.c.throttled_until.is_(None), T.c.throttled_until <= now),
            )
            .values(
                attempts=case((fresh, 1), else_=T.c.attempts + 1),
                window_start=case((fresh, at), else_=T.c.window_start),
                throttled_until=None,
            )
            .returning(T.c.attempts)
        )
    ).scalar_one_or_none()
    created = False
    if attempts is None:
        until = (
            await db.execute(select(T.c.throttled_until).where(T.c.identifier_mac == mac))
        ).scalar_one_or_none()
        if until is not None:  # throttled (the update skips only those rows)
            return (until - now).total_seconds(), False
        await db.execute(
            T.insert().values(
                identifier_mac=mac, attempts=1, window_start=now, throttled_until=None
            )
        )
        attempts, created = 1, True
    if attempts <= limits.max_failures:
        return None, created
    await db.execute(
        update(T)
        .where(T.c.identifier_mac == mac)
        .values(attempts=0, throttled_until=now + limits.throttle)
    )
    # The identifier is not logged: a prefix of its MAC links the entries of one throttle.
    log.warning("login_throttled", identifier_mac=mac.hex()[:12], failures=limits.max_failures)
    return limits.throttle.total_seconds(), created


async def _prune(
    sessions: async_sessionmaker[AsyncSession], now: datetime, window: timedelta
) -> None:
    """Delete a few rows whose window and throttle are over (they count nothing any more)."""
    expired = (
        select(T.c.identifier_mac)
        .where(
            T.c.window_start <= now - window,
            or_(T.c.throttled_until.is_(None), T.c.throttled_until <= now),
        )
        .limit(PRUNE_BATCH)
    )
    try:
        async with transaction(sessions) as db:
            await db.execute(delete(T).where(T.c.identifier_mac.in_(expired)))
    except DBAPIError as exc:
        # Housekeeping only (the attempt is committed): two prunes may deadlock on
        # PostgreSQL; the next new row prunes again.
        log.warning("login_failures_prune_failed", error_type=type(exc.orig).__name__)
