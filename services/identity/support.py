"""DMP Info Service: a support agent reissues the activation path of a patient who lost
their phone and mailbox (so neither login nor self-service recovery can reach them).

The agent is a staff card with role `info_service`; the edge has already asked
consent, which allows the role this one action on an existing record, never a
read, and logged the call in the record's access history (which also tells
notify to alert the patient on every channel it knows). Here: the identity
check the agent made is recorded with the reissue (which questions, the
call's reference; never the answers), the reissues are limited per agent and
per patient, and the new code goes either into a letter to post or to the new
contact the patient gave on the phone. Nothing changes on the account until
the patient uses the code (RegisterPatientAccount), so a reissue obtained by
deceit is visible to the real patient before it can be used.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2
from kit.db import transaction
from kit.errors import invalid_argument, not_found, permission_denied, resource_exhausted
from kit.idempotency import Key
from kit.logs import get_logger
from kit.principal import require_kind
from services.identity import accounts, creation_codes, letter, validation
from services.identity.login import contact_of, timestamp
from services.identity.login_sessions import account_name
from services.identity.models import accounts as accounts_table
from services.identity.models import support_reissues
from services.identity.runtime import Runtime

log = get_logger(__name__)

METHOD = "ReissueActivation"
ROLE = "info_service"
POSTAL = "postal"
ID = identity_pb2
#: The questions an agent must have checked, and how many distinct ones at least.
REQUIRED_CHECKS = frozenset({ID.IDENTITY_CHECK_ITEM_NAMES, ID.IDENTITY_CHECK_ITEM_BIRTH_DATE})
MIN_CHECKS = 3
_REFERENCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/.")


@dataclass(frozen=True)
class Delivery:
    """Where the new code goes: a letter (POSTAL) or a new contact."""

    kind: str
    email: str = ""
    mobile_phone: str = ""


def may_reissue(principal: principal_pb2.Principal | None) -> principal_pb2.Principal:
    """A staff principal holding the DMP Info Service role; else PERMISSION_DENIED."""
    caller = require_kind(principal, principal_pb2.PRINCIPAL_KIND_STAFF)
    if ROLE not in caller.roles:
        raise permission_denied("ROLE_REQUIRED", "Only DMP Info Service agents may reissue.")
    return caller


def checked_items(check: identity_pb2.IdentityCheck) -> list[int]:
    """The distinct questions checked, validated (at least 3, names and birth date)."""
    items: list[int] = sorted(int(i) for i in set(check.checked))
    for item in items:
        if item == ID.IDENTITY_CHECK_ITEM_UNSPECIFIED:
            raise invalid_argument(
                "ENUM_UNSPECIFIED",
                "identity_check.checked holds an unset item.",
                "identity_check.checked",
            )
        if item not in ID.IdentityCheckItem.values():
            raise invalid_argument(
                "ENUM_UNKNOWN",
                "identity_check.checked holds an unknown item.",
                "identity_check.checked",
            )
    if not items:
        raise invalid_argument(
            "IDENTITY_CHECK_REQUIRED",
            "The identity check made during the call is required.",
            "identity_check.checked",
        )
    if len(items) < MIN_CHECKS or not REQUIRED_CHECKS.issubset(items):
        raise invalid_argument(
            "IDENTITY_CHECK_INSUFFICIENT",
            f"At least {MIN_CHECKS} distinct questions, names and birth date among them.",
            "identity_check.checked",
        )
    return items


def call_reference(value: str) -> str:
    if not 4 <= len(value) <= 64 or any(c not in _REFERENCE_CHARS for c in value):
        raise invalid_argument(
            "INVALID_CALL_REFERENCE",
            "call_reference is 4 to 64 letters, digits, '-', '_', '/' or '.'.",
            "identity_check.call_reference",
        )
    return value


def delivery_of(request: identity_pb2.ReissueActivationRequest) -> Delivery:
    which = request.WhichOneof("delivery")
    if which == "postal_letter":
        return Delivery(POSTAL)
    if which == "new_contact":
        email = validation.email(request.new_contact.email, "new_contact.email")
        phone = validation.mobile_phone(
            request.new_contact.mobile_phone, "new_contact.mobile_phone"
        )
        if not email and not phone:
            raise invalid_argument(
                "CONTACT_REQUIRED",
                "An e-mail or a mobile phone is needed for codes.",
                "new_contact",
            )
        return Delivery(contact_of(email, phone).channel, email, phone)
    raise invalid_argument(
        "FIELD_REQUIRED", "postal_letter or new_contact is required.", "delivery"
    )


async def _limit(
    db: AsyncSession,
    column: ColumnElement[str],
    value: str,
    *,
    now: datetime,
    most: int,
    window: timedelta,
) -> None:
    """RESOURCE_EXHAUSTED when `most` reissues of `value` happened within `window`."""
    count, oldest = (
        await db.execute(
            select(func.count(), func.min(support_reissues.c.created_at)).where(
                column == value,
                support_reissues.c.created_at > now - window,
            )
        )
    ).one()
    if count >= most:
        retry = max(1.0, (oldest + window - now).total_seconds())
        raise resource_exhausted(
            "SUPPORT_RATE_LIMITED", "Too many reissues; try again later.", retry
        )


async def reissue(
    rt: Runtime,
    key: Key,
    caller: principal_pb2.Principal,
    ins: str,
    *,
    checked: list[int],
    reference: str,
    delivery: Delivery,
) -> identity_pb2.ReissueActivationResponse:
    s = rt.settings
    now = rt.clock.now()
    postal = delivery.kind == POSTAL
    ttl = s.activation_letter_ttl if postal else s.creation_code_ttl
    reissue_id = uuid.uuid4().hex
    async with transaction(rt.db) as db:
        await rt.requests.replay(
            db,
            key,
            scope=caller.subject,
            method=METHOD,
            response_type=identity_pb2.ReissueActivationResponse,
        )
        await _limit(
            db,
            support_reissues.c.agent_subject,
            caller.subject[:128],
            now=now,
            most=s.support_reissue_agent_max,
            window=timedelta(seconds=s.support_reissue_agent_window_s),
        )
        await _limit(
            db,
            support_reissues.c.ins,
            ins,
            now=now,
            most=s.support_reissue_patient_max,
            window=timedelta(seconds=s.support_reissue_patient_window_s),
        )
        account_id = (
            await db.execute(select(accounts_table.c.id).where(accounts_table.c.ins == ins))
        ).scalar_one_or_none()
        if account_id is None:
            raise not_found(
                "ACCOUNT_NOT_FOUND",
                "This patient has no online account: a creation letter is what they need.",
            )
        code, expires = await creation_codes.issue(
            db,
            ins=ins,
            issued_by=caller.subject,
            pepper=rt.pepper,
            now=now,
            ttl=ttl,
            purpose=creation_codes.REISSUE,
            account_id=account_id,
        )
        await db.execute(
            support_reissues.insert().values(
                id=reissue_id,
                agent_subject=caller.subject[:128],
                ins=ins,
                account_id=account_id,
                checked=",".join(ID.IdentityCheckItem.Name(i) for i in checked)[:200],  # type: ignore[arg-type]
                call_reference=reference,
                delivery=delivery.kind,
                created_at=now,
            )
        )
        # The response holds the code, which is not kept: a retry is told so.
        await rt.requests.remember(
            db, key, scope=caller.subject, method=METHOD, response=None, now=now
        )
    log.info("activation_reissued", reissue=reissue_id, delivery=delivery.kind)
    response = identity_pb2.ReissueActivationResponse(
        reissue=f"{account_name(account_id)}/reissues/{reissue_id}",
        expire_time=timestamp(expires),
    )
    if postal:
        response.letter.CopyFrom(
            await accounts.activation_letter(rt, ins, code, expires, letter.REISSUED)
        )
    else:
        contact = contact_of(delivery.email, delivery.mobile_phone)
        response.masked_destination = await rt.notifier.send_code(
            challenge_id=reissue_id,
            channel_name=contact.channel,
            destination=contact.destination,
            code=code,
            purpose="activation",
            expires_at=expires,
        )
    return response
