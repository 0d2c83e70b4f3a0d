"""Patient contact preferences: who may touch them, what is valid, how they are stored.

A patient reads and changes only their own (`patients/{own INS}`); platform
services (internal principals) may act for any patient. Any other caller,
and a patient naming someone else, gets the same PERMISSION_DENIED whether or
not the preferences exist (AIP-211).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2
from kit.db import transaction, utcnow
from kit.errors import invalid_argument, permission_denied
from services.notify import validation
from services.notify.models import contact_preferences

_NAME = re.compile(r"patients/([A-Za-z0-9]{1,64})/contactPreferences")
MAX_REQUEST_ID_LENGTH = 64
#: Kinds a patient cannot silence.
MANDATORY_KINDS = frozenset({notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS})
#: Kinds that are not event notifications (codes go where identity says).
NOT_CONFIGURABLE = frozenset({notify_pb2.NOTIFICATION_KIND_ONE_TIME_CODE})


def patient_of(name: str) -> str:
    match = _NAME.fullmatch(name)
    if match is None:
        raise invalid_argument(
            "NAME_INVALID", "name must be patients/{patient}/contactPreferences.", "name"
        )
    return match.group(1)


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


async def save(
    sessions: async_sessionmaker[AsyncSession], patient: str, prefs: Preferences
) -> notify_pb2.ContactPreferences:
    now = utcnow()
    values = {
        "email": prefs.email or None,
        "mobile_phone": prefs.mobile_phone or None,
        "choices": _encode(prefs.choices),
        "update_time": now,
    }
    table = contact_preferences
    update = table.update().where(table.c.patient == patient).values(**values)
    async with transaction(sessions) as session:
        changed = (await session.execute(update)).rowcount  # type: ignore[attr-defined]
    if not changed:
        try:
            async with transaction(sessions) as session:
                await session.execute(
                    table.insert().values(patient=patient, create_time=now, **values)
                )
        except IntegrityError:
            # A concurrent first save won the insert: last writer wins, as for updates.
            async with transaction(sessions) as session:
                await session.execute(update)
    return await load(sessions, patient)


async def load(
    sessions: async_sessionmaker[AsyncSession], patient: str
) -> notify_pb2.ContactPreferences:
    """The stored preferences, or empty ones: the singleton always exists."""
    name = f"patients/{patient}/contactPreferences"
    async with sessions() as session:
        result = await session.execute(
            select(contact_preferences).where(contact_preferences.c.patient == patient)
        )
        row = result.mappings().first()
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


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise invalid_argument(
            "REQUEST_ID_INVALID",
            f"request_id is at most {MAX_REQUEST_ID_LENGTH} characters.",
            "request_id",
        )
