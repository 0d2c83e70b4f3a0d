"""Events consent publishes through its outbox (ids only, never medical content)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from google.protobuf import timestamp_pb2
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.consent.v1 import events_pb2
from kit.outbox import add_event, new_event_id
from services.consent.models import outbox

CHANGED = "dmp.consent.changed"
ACCESS_RECORDED = "dmp.consent.access.recorded"


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


async def consent_changed(
    session: AsyncSession,
    dossier: str,
    access_rule: str,
    actor: str,
    *,
    by_patient: bool,
    when: datetime,
    actor_rpps: str = "",
) -> str:
    event_id = new_event_id()
    message = events_pb2.ConsentChanged(
        event_id=event_id,
        dossier=dossier,
        access_rule=access_rule,
        actor=actor,
        by_patient=by_patient,
        occur_time=_ts(when),
        actor_rpps=actor_rpps,
    )
    return await add_event(session, outbox, CHANGED, message, event_id=event_id)


async def access_recorded(
    session: AsyncSession,
    dossier: str,
    *,
    entry_name: str,
    principal_kind: int,
    subject: str,
    mode: int,
    first_access: bool,
    emergency: bool,
    when: datetime,
    activation_reissued: bool = False,
    emergency_access_rule: str = "",
    establishment_finess: str = "",
    establishment_name: str = "",
) -> str:
    event_id = new_event_id()
    message = events_pb2.AccessRecorded(
        event_id=event_id,
        dossier=dossier,
        access_log_entry=entry_name,
        principal_kind=cast(Any, principal_kind),
        principal_subject=subject,
        mode=cast(Any, mode),
        first_access=first_access,
        emergency=emergency,
        occur_time=_ts(when),
        activation_reissued=activation_reissued,
        emergency_access_rule=emergency_access_rule,
        establishment_finess=establishment_finess,
        establishment_name=establishment_name,
    )
    return await add_event(session, outbox, ACCESS_RECORDED, message, event_id=event_id)
