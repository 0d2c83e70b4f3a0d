"""Helpers of the event notification tests: build and publish real event protos."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.api import PubAck

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import events_pb2 as consent_events
from dmp.identity.v1 import events_pb2 as identity_events
from dmp.notify.v1 import notify_pb2
from dmp.records.v1 import events_pb2 as records_events
from dmp.records.v1 import records_pb2


def new_ins() -> str:
    return str(uuid.uuid4().int)[:13]


def new_dossier() -> str:
    return f"dossiers/{uuid.uuid4().hex}"


def new_email() -> str:
    return f"p{uuid.uuid4().hex[:10]}@exemple.fr"


def new_id() -> str:
    return uuid.uuid4().hex


def header(event_id: str | None = None, actor: str = "810000000001") -> records_events.EventHeader:
    h = records_events.EventHeader(event_id=event_id or new_id(), actor=actor)
    h.occur_time.FromDatetime(datetime.now(UTC))
    return h


def dossier_created(
    dossier: str,
    ins: str,
    *,
    minor: bool = False,
    representatives: tuple[str, ...] = (),
    event_id: str | None = None,
    email: str = "",
    phone: str = "",
) -> records_events.DossierCreated:
    return records_events.DossierCreated(
        contact_email=email,
        contact_mobile_phone=phone,
        header=header(event_id),
        dossier=dossier,
        patient_ins=ins,
        state=records_pb2.DOSSIER_STATE_ACTIVE,
        minor=minor,
        legal_representatives=[
            records_events.RepresentativeRef(representative_id=f"r{i}", ins=r)
            for i, r in enumerate(representatives)
        ],
    )


def dossier_state(
    dossier: str, ins: str, state: int, event_id: str | None = None
) -> records_events.DossierStateChanged:
    return records_events.DossierStateChanged(
        header=header(event_id),
        dossier=dossier,
        patient_ins=ins,
        state=state,  # type: ignore[arg-type]
    )


def document(
    dossier: str,
    *,
    document_id: str | None = None,
    hidden: bool = False,
    class_code: str = "11",
    event_id: str | None = None,
) -> records_events.DocumentChanged:
    return records_events.DocumentChanged(
        header=header(event_id),
        dossier=dossier,
        document=f"{dossier}/documents/{document_id or new_id()}",
        class_code=class_code,
        invisible_to_patient=hidden,
    )


def access(
    dossier: str,
    *,
    first: bool = False,
    emergency: bool = False,
    rpps: str = "810000000042",
    event_id: str | None = None,
    session: str = "",
) -> consent_events.AccessRecorded:
    message = consent_events.AccessRecorded(
        event_id=event_id or new_id(),
        dossier=dossier,
        access_log_entry=f"{dossier}/accessLog/{new_id()}",
        principal_kind=principal_pb2.PRINCIPAL_KIND_PROFESSIONAL,
        principal_subject=rpps,
        mode=principal_pb2.ACCESS_MODE_BRIS_DE_GLACE
        if emergency
        else principal_pb2.ACCESS_MODE_NORMAL,
        first_access=first,
        emergency=emergency,
        emergency_access_rule=f"{dossier}/accessRules/{session}" if session else "",
    )
    message.occur_time.FromDatetime(datetime.now(UTC))
    return message


def contact_given(ins: str, email: str = "", phone: str = "") -> identity_events.ContactGiven:
    return identity_events.ContactGiven(
        account=f"accounts/{new_id()}", ins=ins, email=email, mobile_phone=phone
    )


def consent_changed(
    dossier: str, *, by_patient: bool = False, rule: str = "x", event_id: str | None = None
) -> consent_events.ConsentChanged:
    message = consent_events.ConsentChanged(
        event_id=event_id or new_id(),
        dossier=dossier,
        access_rule=f"{dossier}/accessRules/{rule}" if rule else "",
        actor="810000000042",
        by_patient=by_patient,
    )
    message.occur_time.FromDatetime(datetime.now(UTC))
    return message


async def publish(
    js: JetStreamContext, subject: str, message: Message | bytes, msg_id: str | None = None
) -> PubAck:
    """Publish as the owning service's outbox would; the acknowledgement says where the
    message sits in its stream (`tests.waits.consumed_through` waits for it)."""
    data = message if isinstance(message, bytes) else message.SerializeToString()
    return await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id or new_id()})


def prefs(
    ins: str,
    email: str = "",
    phone: str = "",
    choices: dict[int, list[int]] | None = None,
) -> notify_pb2.ContactPreferences:
    return notify_pb2.ContactPreferences(
        name=f"patients/{ins}/contactPreferences",
        email=email,
        mobile_phone=phone,
        choices=[notify_pb2.ChannelChoice(kind=k, channels=v) for k, v in (choices or {}).items()],
    )


async def eventually(
    check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
