"""Patient contact preferences: who may touch them, what is valid, how they are stored.

A patient reads and changes only their own (`patients/{own INS}`); platform
services (internal principals) may act for any patient. Any other caller,
and a patient naming someone else, gets the same PERMISSION_DENIED whether or
not the preferences exist (AIP-211). A change replaces the preferences whole
and is idempotent per request id (`kit.idempotency`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2
from kit import names
from kit.db import transaction, utcnow
from kit.errors import invalid_argument, permission_denied
from kit.idempotency import Ledger
from services.notify import models, validation
from services.notify.repository import preferences as repo

_NAME = re.compile(r"patients/([A-Za-z0-9]{1,64})/contactPreferences")
METHOD = "SetContactPreferences"
REQUESTS = Ledger(models.processed_requests)
#: Kinds a patient cannot silence.
MANDATORY_KINDS = frozenset(
    {
        notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS,
        # Someone reissued the activation path: the real patient must be able to react.
        notify_pb2.NOTIFICATION_KIND_ACTIVATION_REISSUED,
    }
)
#: Kinds that are not event notifications (codes go where identity says).
NOT_CONFIGURABLE = frozenset({notify_pb2.NOTIFICATION_KIND_ONE_TIME_CODE})


def patient_of(name: str) -> str:
    return names.parse(_NAME, name, "name must be patients/{patient}/contactPreferences.").group(1)


def authorize(principal: principal_pb2.Principal | None, patient: str) -> None:
    if principal is not None:
        if principal.kind == principal_pb2.PRINCIPAL_KIND_INTERNAL:
            return
        if (
            principal.kind == principal_pb2.PRINCIPAL_KIND_PATIENT
            and principal.patient_ins
            and principal.patient_ins == patient
        ):
            return
    raise permission_denied(
        "PERMISSION_DENIED", "The caller may not access these contact preferences."
    )


@dataclass(frozen=True)
class Preferences:
    email: str
    mobile_phone: str
    choices: dict[int, list[int]]


def validate(message: notify_pb2.ContactPreferences) -> Preferences:
    """Contacts well formed; every chosen channel has a contact; emergencies not silenced."""
    email = message.email.strip()
    phone = message.mobile_phone.strip()
    if email and not validation.is_valid_email(email):
        raise invalid_argument(
            "EMAIL_INVALID", "email is not a valid address.", "contact_preferences.email"
        )
    if phone and not validation.is_valid_phone(phone):
        raise invalid_argument(
            "PHONE_INVALID",
            "mobile_phone must be in E.164 form (+ and 8 to 15 digits).",
            "contact_preferences.mobile_phone",
        )
    field = "contact_preferences.choices"
    choices: dict[int, list[int]] = {}
    for choice in message.choices:
        if choice.kind not in notify_pb2.NotificationKind.values() or choice.kind in (
            notify_pb2.NOTIFICATION_KIND_UNSPECIFIED,
            *NOT_CONFIGURABLE,
        ):
            raise invalid_argument("KIND_INVALID", "choices name an invalid kind.", field)
        if choice.kind in choices:
            raise invalid_argument("CHOICE_DUPLICATED", "a kind appears twice in choices.", field)
        channels: list[int] = []
        for channel in choice.channels:
            if channel not in (notify_pb2.CHANNEL_EMAIL, notify_pb2.CHANNEL_SMS):
                raise invalid_argument(
                    "CHANNEL_UNSPECIFIED", "choices name an invalid channel.", field
                )
            if (channel == notify_pb2.CHANNEL_EMAIL and not email) or (
                channel == notify_pb2.CHANNEL_SMS and not phone
            ):
                raise invalid_argument(
                    "CHANNEL_WITHOUT_CONTACT",
                    "a chosen channel has no e-mail address or mobile number.",
                    field,
                )
            if channel not in channels:
                channels.append(channel)
        if not channels and choice.kind in MANDATORY_KINDS:
            raise invalid_argument(
                "EMERGENCY_NOTIFICATION_REQUIRED",
                "emergency accesses are always notified: choose at least one channel.",
                field,
            )
        choices[choice.kind] = channels
    return Preferences(email=email, mobile_phone=phone, choices=choices)


def _encode(choices: dict[int, list[int]]) -> str:
    return json.dumps(
        {
            notify_pb2.NotificationKind.Name(kind): [notify_pb2.Channel.Name(c) for c in channels]  # type: ignore[arg-type]
            for kind, channels in sorted(choices.items())
        },
        sort_keys=True,
    )


def _decode(text: str) -> list[notify_pb2.ChannelChoice]:
    data: dict[str, list[str]] = json.loads(text)
    return [
        notify_pb2.ChannelChoice(
            kind=notify_pb2.NotificationKind.Value(kind),
            channels=[notify_pb2.Channel.Value(c) for c in channels],
        )
        for kind, channels in data.items()
    ]


async def _store(session: AsyncSession, patient: str, prefs: Preferences, now: datetime) -> None:
    await repo.upsert(
        session,
        patient,
        email=prefs.email or None,
        mobile_phone=prefs.mobile_phone or None,
        choices=_encode(prefs.choices),
        now=now,
    )


async def save(
    sessions: async_sessionmaker[AsyncSession], patient: str, prefs: Preferences
) -> notify_pb2.ContactPreferences:
    """Replace the patient's preferences (last writer wins); the stored result."""
    for attempt in (0, 1):
        try:
            async with transaction(sessions) as session:
                await _store(session, patient, prefs, utcnow())
                return await _load(session, patient)
        except IntegrityError:
            # A concurrent first save won the insert: now an update, as for later changes.
            if attempt:
                raise
    raise AssertionError("unreachable")


async def change(
    sessions: async_sessionmaker[AsyncSession],
    request: notify_pb2.SetContactPreferencesRequest,
    principal: principal_pb2.Principal | None,
) -> notify_pb2.ContactPreferences:
    """SetContactPreferences: authorization first, so an outsider learns nothing from
    validation errors; then the request id, the fields, and the write with its answer."""
    wanted = request.contact_preferences
    patient = patient_of(wanted.name)
    authorize(principal, patient)
    assert principal is not None  # authorize refuses a call without one
    key = REQUESTS.key(request)
    prefs = validate(wanted)
    for attempt in (0, 1):
        now = utcnow()
        try:
            async with transaction(sessions) as session:
                prior = await REQUESTS.replay(
                    session,
                    key,
                    scope=principal.subject,
                    method=METHOD,
                    response_type=notify_pb2.ContactPreferences,
                )
                if prior is not None:
                    return prior
                await _store(session, patient, prefs, now)
                saved = await _load(session, patient)
                await REQUESTS.remember(
                    session, key, scope=principal.subject, method=METHOD, response=saved, now=now
                )
                return saved
        except IntegrityError:
            # A concurrent first save of this patient won the insert: now an update.
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _load(session: AsyncSession, patient: str) -> notify_pb2.ContactPreferences:
    name = f"patients/{patient}/contactPreferences"
    row = await repo.get(session, patient)
    if row is None:
        return notify_pb2.ContactPreferences(name=name)
    message = notify_pb2.ContactPreferences(
        name=name,
        email=row["email"] or "",
        mobile_phone=row["mobile_phone"] or "",
        choices=_decode(row["choices"]),
    )
    message.update_time.FromDatetime(row["update_time"])
    return message


async def load(
    sessions: async_sessionmaker[AsyncSession], patient: str
) -> notify_pb2.ContactPreferences:
    """The stored preferences, or empty ones: the singleton always exists."""
    async with sessions() as session:
        return await _load(session, patient)
