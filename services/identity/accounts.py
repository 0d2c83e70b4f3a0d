"""Account life: creation codes, sign-up, password change, credential recovery."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import events_pb2, identity_pb2
from kit.db import transaction
from kit.errors import already_exists, failed_precondition, permission_denied, unauthenticated
from kit.idempotency import ANONYMOUS, Key
from kit.logs import get_logger
from kit.principal import require_kind
from services.identity import (
    creation_codes,
    letter,
    login_sessions,
    otp,
    passwords,
    published,
    validation,
)
from services.identity.creation_codes import Consume
from services.identity.login import (
    CHANNEL_PROTO,
    code_error,
    contact_of,
    invalid_credentials,
    session_revoked,
    timestamp,
)
from services.identity.login_sessions import account_name
from services.identity.models import accounts, challenges
from services.identity.runtime import Runtime

log = get_logger(__name__)

ISSUE = "IssueCreationCode"
ISSUE_LETTER = "IssueActivationLetter"
REGISTER = "RegisterPatientAccount"
CHANGE_PASSWORD = "ChangePassword"  # noqa: S105 - a method name
RECOVER = "RecoverCredentials"

# Roles that are refused everything, whatever else the caller holds (docs/ARCHITECTURE.md, Actors).
EXCLUDED_ROLES = frozenset({"medecin_du_travail", "medecin_conseil"})
DESK_ROLE = "guichet_amo"


def may_issue_creation_code(principal: principal_pb2.Principal | None) -> principal_pb2.Principal:
    """A CPAM desk agent (staff, role guichet_amo) or a professional; else PERMISSION_DENIED."""
    caller = require_kind(
        principal, principal_pb2.PRINCIPAL_KIND_STAFF, principal_pb2.PRINCIPAL_KIND_PROFESSIONAL
    )
    if EXCLUDED_ROLES.intersection(caller.roles):
        raise permission_denied("ROLE_EXCLUDED", "This role may not issue creation codes.")
    if caller.kind == principal_pb2.PRINCIPAL_KIND_STAFF and DESK_ROLE not in caller.roles:
        raise permission_denied("ROLE_REQUIRED", "Only CPAM desk staff may issue creation codes.")
    return caller


async def issue_creation_code(
    rt: Runtime, key: Key, ins: str, caller: principal_pb2.Principal
) -> identity_pb2.IssueCreationCodeResponse:
    code, expires = await _issue(
        rt,
        key,
        ins,
        caller,
        method=ISSUE,
        purpose=creation_codes.CREATION,
        ttl=rt.settings.creation_code_ttl,
    )
    return identity_pb2.IssueCreationCodeResponse(
        creation_code=code, expire_time=timestamp(expires)
    )


async def issue_activation_letter(
    rt: Runtime, key: Key, ins: str, caller: principal_pb2.Principal
) -> identity_pb2.ActivationLetter:
    ttl = rt.settings.activation_letter_ttl
    code, expires = await _issue(
        rt, key, ins, caller, method=ISSUE_LETTER, purpose=creation_codes.LETTER, ttl=ttl
    )
    return await activation_letter(rt, ins, code, expires, letter.CREATED)


async def activation_letter(
    rt: Runtime, ins: str, code: str, expires: datetime, purpose: str
) -> identity_pb2.ActivationLetter:
    """The rendered letter (off the event loop: laying out a page takes a few 100 ms)."""
    facts = letter.LetterFacts(
        ins=ins,
        code=code,
        expires_at=expires,
        portal_url=rt.settings.portal_url,
        info_service_phone=rt.settings.info_service_phone,
        purpose=purpose,
    )
    pdf = await asyncio.to_thread(letter.render, facts)
    return identity_pb2.ActivationLetter(
        pdf=pdf,
        media_type=letter.MEDIA_TYPE,
        file_name=letter.FILE_NAME,
        expire_time=timestamp(expires),
    )


async def _issue(
    rt: Runtime,
    key: Key,
    ins: str,
    caller: principal_pb2.Principal,
    *,
    method: str,
    purpose: str,
    ttl: timedelta,
) -> tuple[str, datetime]:
    """A code for `ins`, whether or not it has an account (the answer is no oracle: a code
    for an existing account can never register), cancelling no other code."""
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=caller.subject,
            method=method,
            response_type=identity_pb2.IssueCreationCodeResponse,
        )
        code, expires = await creation_codes.issue(
            db,
            ins=ins,
            issued_by=caller.subject,
            pepper=rt.pepper,
            now=now,
            ttl=ttl,
            purpose=purpose,
        )
        # The response holds the code, which is not kept: a retry is told so.
        await rt.requests.remember(
            db, key, scope=caller.subject, method=method, response=None, now=now
        )
    log.info("creation_code_issued", issued_by_kind=caller.kind, purpose=purpose)
    return code, expires


def account_message(
    account_id: str, ins: str, email: str | None, mobile_phone: str | None, created: object
) -> identity_pb2.Account:
    contact = contact_of(email, mobile_phone)
    return identity_pb2.Account(
        name=account_name(account_id),
        ins=ins,
        masked_email=validation.mask_email(email or ""),
        masked_mobile_phone=validation.mask_phone(mobile_phone or ""),
        code_channel=CHANNEL_PROTO[contact.channel],
        create_time=timestamp(created),
    )


async def register(
    rt: Runtime,
    key: Key,
    *,
    ins: str,
    code: str,
    password: str,
    email: str,
    mobile_phone: str,
) -> identity_pb2.Account:
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db, key, scope=ANONYMOUS, method=REGISTER, response_type=identity_pb2.Account
        )
    if replayed is not None:
        return replayed
    password_hash = await rt.passwords.hash(password)
    now = rt.clock.now()
    account_id = uuid.uuid4().hex
    async with transaction(rt.db) as db:
        # The code first: without a valid code nobody learns whether an account exists.
        used = await creation_codes.consume(
            db, ins=ins, code=code, account_id=account_id, pepper=rt.pepper, now=now
        )
        outcome = used.outcome
        if outcome is Consume.INVALID:
            raise unauthenticated("CREATION_CODE_INVALID", "Wrong creation code for this INS.")
        if outcome is Consume.USED:
            raise failed_precondition(
                "CREATION_CODE_ALREADY_USED", "This creation code was already used."
            )
        if outcome is Consume.EXPIRED:
            raise failed_precondition(
                "CREATION_CODE_EXPIRED", "This creation code has expired; ask for a new one."
            )
        if used.purpose == creation_codes.REISSUE:
            target = used.account_id
            make = _reactivate
        else:
            target = account_id
            make = _create
        response = await make(
            db,
            target,
            ins=ins,
            password_hash=password_hash,
            email=email,
            mobile_phone=mobile_phone,
            now=now,
        )
        # Notifications are on by default, to what the patient gave here: notify keeps
        # its own copy (it never reads identity's tables).
        await published.publish(
            db,
            published.CONTACT_GIVEN,
            events_pb2.ContactGiven(
                account=account_name(target),
                ins=ins,
                email=email or "",
                mobile_phone=mobile_phone or "",
                reactivation=used.purpose == creation_codes.REISSUE,
            ),
        )
        await rt.requests.remember(
            db, key, scope=ANONYMOUS, method=REGISTER, response=response, now=now
        )
    log.info("account_registered", account=response.name, reissue=used.purpose == "reissue")
    return response


async def _create(
    db: AsyncSession,
    account_id: str,
    *,
    ins: str,
    password_hash: str,
    email: str,
    mobile_phone: str,
    now: datetime,
) -> identity_pb2.Account:
    exists = (await db.execute(select(func.count()).where(accounts.c.ins == ins))).scalar_one()
    if exists:
        raise already_exists("ACCOUNT_EXISTS", "This patient already has an account.")
    try:
        await db.execute(
            accounts.insert().values(
                id=account_id,
                ins=ins,
                password_hash=password_hash,
                email=email or None,
                mobile_phone=mobile_phone or None,
                created_at=now,
                password_changed_at=now,
            )
        )
    except IntegrityError as exc:  # a concurrent sign-up of the same INS won
        raise already_exists("ACCOUNT_EXISTS", "This patient already has an account.") from exc
    await published.publish(
        db,
        published.ACCOUNT_REGISTERED,
        events_pb2.AccountRegistered(account=account_name(account_id), ins=ins),
    )
    return account_message(account_id, ins, email, mobile_phone, now)


async def _reactivate(
    db: AsyncSession,
    account_id: str,
    *,
    ins: str,
    password_hash: str,
    email: str,
    mobile_phone: str,
    now: datetime,
) -> identity_pb2.Account:
    """A DMP Info Service reissue's code: the account gets the new password and contacts
    (the old ones were lost), every session ends, and no throttle is left."""
    changed = await db.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.ins == ins)
        .values(
            password_hash=password_hash,
            password_changed_at=now,
            email=email or None,
            mobile_phone=mobile_phone or None,
            throttled_until=None,
        )
    )
    if getattr(changed, "rowcount", 0) != 1:  # the account is gone: the code is worthless
        raise unauthenticated("CREATION_CODE_INVALID", "Wrong creation code for this INS.")
    await login_sessions.revoke_all(db, account_id, "CREDENTIALS_RECOVERED", now)
    await published.publish(
        db,
        published.CREDENTIALS_CHANGED,
        events_pb2.CredentialsChanged(
            account=account_name(account_id),
            ins=ins,
            change=events_pb2.CREDENTIAL_CHANGE_REACTIVATED,
        ),
    )
    created = (
        await db.execute(select(accounts.c.created_at).where(accounts.c.id == account_id))
    ).scalar_one()
    return account_message(account_id, ins, email, mobile_phone, created)


async def change_password(
    rt: Runtime,
    key: Key,
    principal: principal_pb2.Principal,
    current: str,
    new: str,
) -> identity_pb2.ChangePasswordResponse:
    now = rt.clock.now()
    caller = principal.session_id
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db,
            key,
            scope=caller,
            method=CHANGE_PASSWORD,
            response_type=identity_pb2.ChangePasswordResponse,
        )
        if replayed is not None:
            return replayed
        found = await login_sessions.find(db, principal.session_id, principal.patient_ins, now)
        if found is None or not found.active:
            raise session_revoked()
        stored = (
            await db.execute(
                select(accounts.c.password_hash).where(accounts.c.id == found.account_id)
            )
        ).scalar_one()
    passwords.check_policy(new, found.ins, "new_password")
    if not await rt.passwords.verify(stored, current):
        raise invalid_credentials()
    new_hash = await rt.passwords.hash(new)
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        changed = await db.execute(
            update(accounts)
            .where(accounts.c.id == found.account_id, accounts.c.password_hash == stored)
            .values(password_hash=new_hash, password_changed_at=now)
        )
        if getattr(changed, "rowcount", 0) != 1:  # changed concurrently: the old one is wrong
            raise invalid_credentials()
        revoked = await login_sessions.revoke_all(
            db, found.account_id, "PASSWORD_CHANGED", now, keep=found.session_id
        )
        await published.publish(
            db,
            published.CREDENTIALS_CHANGED,
            events_pb2.CredentialsChanged(
                account=account_name(found.account_id),
                ins=found.ins,
                change=events_pb2.CREDENTIAL_CHANGE_PASSWORD_CHANGED,
            ),
        )
        response = identity_pb2.ChangePasswordResponse(
            account=account_name(found.account_id), revoked_sessions=revoked
        )
        await rt.requests.remember(
            db, key, scope=caller, method=CHANGE_PASSWORD, response=response, now=now
        )
    log.info("password_changed", account=found.account_id, revoked_sessions=revoked)
    return response


async def start_recovery(
    rt: Runtime, key: Key, ins: str
) -> identity_pb2.RecoverCredentialsResponse:
    """Same answer whether or not an account exists (a challenge name that leads nowhere).

    Known limit: the call to notify makes the existing-account path slower by
    one loopback RPC; the gateway's rate limits bound what timing can reveal.
    """
    now = rt.clock.now()
    expires = now + rt.settings.otp_ttl
    challenge_id = uuid.uuid4().hex
    delivery = None
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=ANONYMOUS,
            method=RECOVER,
            response_type=identity_pb2.RecoverCredentialsResponse,
        )
        account = (
            await db.execute(
                select(
                    accounts.c.id,
                    accounts.c.email,
                    accounts.c.mobile_phone,
                    accounts.c.throttled_until,
                ).where(accounts.c.ins == ins)
            )
        ).one_or_none()
        throttled = (
            account is not None
            and account.throttled_until is not None
            and account.throttled_until > now
        )
        if account is not None and not throttled:
            contact = contact_of(account.email, account.mobile_phone)
            created = await otp.create_challenge(
                db,
                account_id=account.id,
                purpose=otp.RECOVERY,
                channel=contact.channel,
                pepper=rt.pepper,
                now=now,
                ttl=rt.settings.otp_ttl,
            )
            challenge_id, expires = created.challenge_id, created.expires_at
            delivery = (contact, created.code)
        await rt.requests.remember(db, key, scope=ANONYMOUS, method=RECOVER, response=None, now=now)
    if delivery is not None:
        contact, code = delivery
        await rt.notifier.send_code(
            challenge_id=challenge_id,
            channel_name=contact.channel,
            destination=contact.destination,
            code=code,
            purpose=otp.RECOVERY,
            expires_at=expires,
        )
    return identity_pb2.RecoverCredentialsResponse(
        challenge=f"challenges/{challenge_id}", expire_time=timestamp(expires)
    )


async def complete_recovery(
    rt: Runtime, key: Key, challenge_id: str, code: str, new_password: str
) -> identity_pb2.RecoverCredentialsResponse:
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=ANONYMOUS,
            method=RECOVER,
            response_type=identity_pb2.RecoverCredentialsResponse,
        )
        ins = (
            await db.execute(
                select(accounts.c.ins)
                .join(challenges, challenges.c.account_id == accounts.c.id)
                .where(challenges.c.id == challenge_id, challenges.c.purpose == otp.RECOVERY)
            )
        ).scalar_one_or_none()
    # Policy before the code is tried, so a weak password does not burn a try.
    passwords.check_policy(new_password, ins or "", "complete.new_password")
    new_hash = await rt.passwords.hash(new_password)
    now = rt.clock.now()
    response: identity_pb2.RecoverCredentialsResponse | None = None
    async with transaction(rt.db) as db:
        check = await otp.check_code(
            db,
            challenge_id=challenge_id,
            purpose=otp.RECOVERY,
            code=code,
            pepper=rt.pepper,
            now=now,
            max_attempts=rt.settings.otp_max_attempts,
            throttle=rt.settings.throttle,
        )
        if check.outcome is otp.Outcome.OK:
            await db.execute(
                update(accounts)
                .where(accounts.c.id == check.account_id)
                .values(password_hash=new_hash, password_changed_at=now)
            )
            revoked = await login_sessions.revoke_all(
                db, check.account_id, "CREDENTIALS_RECOVERED", now
            )
            await published.publish(
                db,
                published.CREDENTIALS_CHANGED,
                events_pb2.CredentialsChanged(
                    account=account_name(check.account_id),
                    ins=ins or "",
                    change=events_pb2.CREDENTIAL_CHANGE_RECOVERED,
                ),
            )
            response = identity_pb2.RecoverCredentialsResponse(
                account=account_name(check.account_id)
            )
            await rt.requests.remember(
                db, key, scope=ANONYMOUS, method=RECOVER, response=response, now=now
            )
            log.info("credentials_recovered", account=check.account_id, revoked_sessions=revoked)
    if response is None:
        raise code_error(check)
    return response
