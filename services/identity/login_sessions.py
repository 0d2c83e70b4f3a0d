"""Sessions and their rotating refresh tokens.

A refresh token is 32 random bytes, stored as SHA-256 (a 256-bit secret needs
no slow hash). Each use marks it used and issues the next one; presenting a
used token again means two parties hold the chain, so the whole session is
revoked (theft detection). Revocations publish `dmp.identity.session.revoked`
so the gateway refuses the session's access tokens at once.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.identity.v1 import events_pb2
from services.identity import published
from services.identity.models import accounts, refresh_tokens, sessions

TOKEN_PREFIX = "dmprt_"  # noqa: S105 - a public prefix
_TOKEN_LENGTH = len(TOKEN_PREFIX) + 43  # 32 bytes, base64url without padding


class Refresh(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    EXPIRED = "expired"
    REUSED = "reused"
    REVOKED = "revoked"


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    account_id: str
    ins: str
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class RefreshResult:
    outcome: Refresh
    session: OpenedSession | None = None


def account_name(account_id: str) -> str:
    return f"accounts/{account_id}"


def session_name(account_id: str, session_id: str) -> str:
    return f"accounts/{account_id}/sessions/{session_id}"


def new_refresh_token() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return TOKEN_PREFIX + raw


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _add_refresh_token(
    db: AsyncSession, session_id: str, now: datetime, expires: datetime
) -> str:
    token = new_refresh_token()
    await db.execute(
        refresh_tokens.insert().values(
            session_id=session_id,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=expires,
        )
    )
    return token


async def open_session(
    db: AsyncSession,
    *,
    account_id: str,
    ins: str,
    now: datetime,
    refresh_ttl: timedelta,
    max_age: timedelta,
) -> OpenedSession:
    session_id = uuid.uuid4().hex
    session_expires = now + max_age
    await db.execute(
        sessions.insert().values(
            id=session_id, account_id=account_id, created_at=now, expires_at=session_expires
        )
    )
    refresh_expires = min(now + refresh_ttl, session_expires)
    token = await _add_refresh_token(db, session_id, now, refresh_expires)
    return OpenedSession(session_id, account_id, ins, token, refresh_expires)


async def rotate(
    db: AsyncSession, *, token: str, now: datetime, refresh_ttl: timedelta
) -> RefreshResult:
    """Use `token` once: the next token, or why not (a reuse revokes the session)."""
    if len(token) != _TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        return RefreshResult(Refresh.INVALID)
    row = (
        await db.execute(
            select(
                refresh_tokens.c.id,
                refresh_tokens.c.expires_at,
                refresh_tokens.c.used_at,
                sessions.c.id.label("session_id"),
                sessions.c.expires_at.label("session_expires_at"),
                sessions.c.revoked_at,
                accounts.c.id.label("account_id"),
                accounts.c.ins,
            )
            .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(refresh_tokens.c.token_hash == token_hash(token))
        )
    ).one_or_none()
    if row is None:
        return RefreshResult(Refresh.INVALID)
    if row.revoked_at is not None:
        return RefreshResult(Refresh.REVOKED)
    if row.used_at is not None:
        await revoke(db, row.session_id, row.account_id, "REFRESH_TOKEN_REUSED", now)
        return RefreshResult(Refresh.REUSED)
    if row.expires_at <= now or row.session_expires_at <= now:
        return RefreshResult(Refresh.EXPIRED)
    claimed = await db.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.id == row.id, refresh_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    if getattr(claimed, "rowcount", 0) != 1:  # used concurrently: same as a replay
        await revoke(db, row.session_id, row.account_id, "REFRESH_TOKEN_REUSED", now)
        return RefreshResult(Refresh.REUSED)
    expires = min(now + refresh_ttl, row.session_expires_at)
    new_token = await _add_refresh_token(db, row.session_id, now, expires)
    return RefreshResult(
        Refresh.OK, OpenedSession(row.session_id, row.account_id, row.ins, new_token, expires)
    )


_REASONS = {
    "LOGOUT": events_pb2.REVOKE_REASON_LOGOUT,
    "REFRESH_TOKEN_REUSED": events_pb2.REVOKE_REASON_REFRESH_TOKEN_REUSED,
    "PASSWORD_CHANGED": events_pb2.REVOKE_REASON_PASSWORD_CHANGED,
    "CREDENTIALS_RECOVERED": events_pb2.REVOKE_REASON_CREDENTIALS_RECOVERED,
}


async def revoke(
    db: AsyncSession, session_id: str, account_id: str, reason: str, now: datetime
) -> bool:
    """Revoke one session if still active; publish the event. False if it already was."""
    result = await db.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    await published.publish(
        db,
        published.SESSION_REVOKED,
        events_pb2.SessionRevoked(
            session_id=session_id, account=account_name(account_id), reason=_REASONS[reason]
        ),
    )
    return True


async def revoke_all(
    db: AsyncSession, account_id: str, reason: str, now: datetime, *, keep: str = ""
) -> int:
    """Revoke every active session of the account but `keep`; returns how many."""
    ids = (
        await db.execute(
            select(sessions.c.id).where(
                sessions.c.account_id == account_id,
                sessions.c.revoked_at.is_(None),
                sessions.c.id != keep,
            )
        )
    ).scalars()
    count = 0
    for session_id in list(ids):
        count += await revoke(db, session_id, account_id, reason, now)
    return count


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    account_id: str
    ins: str
    active: bool


async def find(db: AsyncSession, session_id: str, ins: str, now: datetime) -> SessionRow | None:
    """The session named by a patient principal, if it exists and is that patient's."""
    if not session_id or len(session_id) > 32:
        return None
    row = (
        await db.execute(
            select(sessions.c.expires_at, sessions.c.revoked_at, accounts.c.id, accounts.c.ins)
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.id == session_id)
        )
    ).one_or_none()
    if row is None or row.ins != ins:
        return None
    active = row.revoked_at is None and row.expires_at > now
    return SessionRow(session_id, row.id, row.ins, active)
