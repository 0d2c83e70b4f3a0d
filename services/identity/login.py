"""Login (password, then one-time code), token refresh and logout.

Wrong passwords are counted per identifier (`login_throttle`): past
`DMP_LOGIN_MAX_FAILURES` within `DMP_LOGIN_FAILURE_WINDOW_S`, StartLogin answers
RESOURCE_EXHAUSTED LOGIN_THROTTLED for `DMP_LOGIN_THROTTLE_S`, the same for every
caller of that identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, update

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2
from kit.db import transaction
from kit.errors import (
    ServiceError,
    failed_precondition,
    resource_exhausted,
    unauthenticated,
)
from kit.idempotency import ANONYMOUS, Key
from kit.logs import get_logger
from services.identity import login_sessions, login_throttle, notifier, otp
from services.identity.login_sessions import Refresh, account_name, session_name
from services.identity.models import accounts
from services.identity.runtime import Runtime

log = get_logger(__name__)

START_LOGIN = "StartLogin"
VERIFY = "VerifyOneTimeCode"
REFRESH = "RefreshToken"
LOGOUT = "Logout"

CHANNEL_PROTO = {
    notifier.SMS: identity_pb2.DELIVERY_CHANNEL_SMS,
    notifier.EMAIL: identity_pb2.DELIVERY_CHANNEL_EMAIL,
}


def timestamp(value: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def invalid_credentials() -> ServiceError:
    return unauthenticated("INVALID_CREDENTIALS", "Wrong identifier or password.")


def login_throttled(retry_after_s: float) -> ServiceError:
    """The same for every identifier, account or not, and whatever the password."""
    return resource_exhausted(
        "LOGIN_THROTTLED",
        "Too many failed logins with this identifier; try again later.",
        retry_after_s,
    )


def throttle_limits(rt: Runtime) -> login_throttle.Limits:
    s = rt.settings
    return login_throttle.Limits(
        max_failures=s.login_max_failures,
        window=s.login_failure_window,
        throttle=s.login_throttle,
    )


@dataclass(frozen=True)
class Contact:
    channel: str
    destination: str


def contact_of(email: str | None, mobile_phone: str | None) -> Contact:
    """SMS when a mobile phone is registered, else e-mail."""
    if mobile_phone:
        return Contact(notifier.SMS, mobile_phone)
    return Contact(notifier.EMAIL, email or "")


def code_error(check: otp.CodeCheck) -> ServiceError:
    if check.outcome is otp.Outcome.EXPIRED:
        return failed_precondition("OTP_EXPIRED", "The code has expired; start again.")
    if check.outcome is otp.Outcome.USED:
        return failed_precondition("OTP_ALREADY_USED", "The code was already used.")
    if check.outcome is otp.Outcome.LOCKED:
        return resource_exhausted(
            "OTP_LOCKED", "Too many wrong codes; try again later.", check.retry_after_s
        )
    return unauthenticated("OTP_INVALID", "Wrong code.")


async def start_login(
    rt: Runtime, key: Key, ins: str, password: str
) -> identity_pb2.StartLoginResponse:
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=ANONYMOUS,
            method=START_LOGIN,
            response_type=identity_pb2.StartLoginResponse,
        )
        row = (
            await db.execute(
                select(accounts.c.id, accounts.c.password_hash).where(accounts.c.ins == ins)
            )
        ).one_or_none()
    # Charged before the password is checked (login_throttle): a throttled identifier is
    # refused whether or not it has an account and whatever the password.
    mac = login_throttle.identifier_mac(rt.pepper, ins)
    throttled = await login_throttle.charge(rt.db, mac, rt.clock.now(), throttle_limits(rt))
    if throttled is not None:
        raise login_throttled(throttled)
    # Outside any transaction: argon2 takes tens of ms. No account → dummy hash, same cost.
    if not await rt.passwords.verify(row.password_hash if row else None, password):
        raise invalid_credentials()
    assert row is not None
    await login_throttle.clear(rt.db, mac)
    now = rt.clock.now()
    new_hash = (
        await rt.passwords.hash(password) if rt.passwords.needs_rehash(row.password_hash) else None
    )
    async with transaction(rt.db) as db:
        account = (
            await db.execute(
                select(accounts.c.email, accounts.c.mobile_phone, accounts.c.throttled_until).where(
                    accounts.c.id == row.id
                )
            )
        ).one()
        if account.throttled_until is not None and account.throttled_until > now:
            raise resource_exhausted(
                "ACCOUNT_THROTTLED",
                "Too many wrong codes recently; try again later.",
                (account.throttled_until - now).total_seconds(),
            )
        if new_hash is not None:
            await db.execute(
                update(accounts)
                .where(accounts.c.id == row.id, accounts.c.password_hash == row.password_hash)
                .values(password_hash=new_hash)
            )
        contact = contact_of(account.email, account.mobile_phone)
        challenge = await otp.create_challenge(
            db,
            account_id=row.id,
            purpose=otp.LOGIN,
            channel=contact.channel,
            pepper=rt.pepper,
            now=now,
            ttl=rt.settings.otp_ttl,
        )
        await rt.requests.remember(
            db, key, scope=ANONYMOUS, method=START_LOGIN, response=None, now=now
        )
    # After commit: never hold a transaction across a network call.
    masked = await rt.notifier.send_code(
        challenge_id=challenge.challenge_id,
        channel_name=contact.channel,
        destination=contact.destination,
        code=challenge.code,
        purpose=otp.LOGIN,
        expires_at=challenge.expires_at,
    )
    log.info("login_started", account=row.id, challenge=challenge.challenge_id)
    return identity_pb2.StartLoginResponse(
        challenge=f"challenges/{challenge.challenge_id}",
        channel=CHANNEL_PROTO[contact.channel],
        masked_destination=masked,
        expire_time=timestamp(challenge.expires_at),
    )


def _tokens(rt: Runtime, opened: login_sessions.OpenedSession) -> identity_pb2.SessionTokens:
    issued = rt.tokens.issue(
        account=opened.account_id, ins=opened.ins, session_id=opened.session_id, now=rt.clock.now()
    )
    return identity_pb2.SessionTokens(
        access_token=issued.token,
        access_token_expire_time=timestamp(issued.claims.expires_at),
        refresh_token=opened.refresh_token,
        refresh_token_expire_time=timestamp(opened.refresh_expires_at),
        account=account_name(opened.account_id),
        session=session_name(opened.account_id, opened.session_id),
    )


async def verify_code(
    rt: Runtime, key: Key, challenge_id: str, code: str
) -> identity_pb2.VerifyOneTimeCodeResponse:
    now = rt.clock.now()
    response: identity_pb2.VerifyOneTimeCodeResponse | None = None
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=ANONYMOUS,
            method=VERIFY,
            response_type=identity_pb2.VerifyOneTimeCodeResponse,
        )
        check = await otp.check_code(
            db,
            challenge_id=challenge_id,
            purpose=otp.LOGIN,
            code=code,
            pepper=rt.pepper,
            now=now,
            max_attempts=rt.settings.otp_max_attempts,
            throttle=rt.settings.throttle,
        )
        if check.outcome is otp.Outcome.OK:
            ins = (
                await db.execute(select(accounts.c.ins).where(accounts.c.id == check.account_id))
            ).scalar_one()
            opened = await login_sessions.open_session(
                db,
                account_id=check.account_id,
                ins=ins,
                now=now,
                refresh_ttl=rt.settings.refresh_token_ttl,
                max_age=rt.settings.session_max_age,
            )
            response = identity_pb2.VerifyOneTimeCodeResponse(tokens=_tokens(rt, opened))
            await rt.requests.remember(
                db, key, scope=ANONYMOUS, method=VERIFY, response=None, now=now
            )
    # The failed try is committed above; only now is the caller told.
    if response is None:
        log.info("code_refused", challenge=challenge_id, outcome=check.outcome.value)
        raise code_error(check)
    log.info("login_completed", account=check.account_id)
    return response


async def refresh(rt: Runtime, key: Key, token: str) -> identity_pb2.RefreshTokenResponse:
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=ANONYMOUS,
            method=REFRESH,
            response_type=identity_pb2.RefreshTokenResponse,
        )
        result = await login_sessions.rotate(
            db, token=token, now=now, refresh_ttl=rt.settings.refresh_token_ttl
        )
        if result.session is not None:
            await rt.requests.remember(
                db, key, scope=ANONYMOUS, method=REFRESH, response=None, now=now
            )
    if result.session is None:
        log.info("refresh_refused", outcome=result.outcome.value)
        if result.outcome is Refresh.REUSED:
            raise unauthenticated(
                "REFRESH_TOKEN_REUSED", "This refresh token was already used; session revoked."
            )
        if result.outcome is Refresh.REVOKED:
            raise unauthenticated("SESSION_REVOKED", "The session was revoked.")
        if result.outcome is Refresh.EXPIRED:
            raise unauthenticated("TOKEN_EXPIRED", "The refresh token has expired.")
        raise unauthenticated("TOKEN_INVALID", "The refresh token is invalid.")
    return identity_pb2.RefreshTokenResponse(tokens=_tokens(rt, result.session))


def session_revoked() -> ServiceError:
    return unauthenticated("SESSION_REVOKED", "The session is unknown, expired or revoked.")


async def logout(
    rt: Runtime, key: Key, principal: principal_pb2.Principal
) -> identity_pb2.LogoutResponse:
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        caller = principal.session_id
        replayed = await rt.requests.replay(
            db, key, scope=caller, method=LOGOUT, response_type=identity_pb2.LogoutResponse
        )
        if replayed is not None:
            return replayed
        found = await login_sessions.find(db, principal.session_id, principal.patient_ins, now)
        if found is None:
            raise session_revoked()
        # Already revoked or expired: logging out again is a success.
        await login_sessions.revoke(db, found.session_id, found.account_id, "LOGOUT", now)
        response = identity_pb2.LogoutResponse(
            session=session_name(found.account_id, found.session_id)
        )
        await rt.requests.remember(db, key, scope=caller, method=LOGOUT, response=response, now=now)
    log.info("logout", account=found.account_id, session=found.session_id)
    return response
