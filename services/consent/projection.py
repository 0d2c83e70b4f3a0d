"""Consent's projection of records' dossier events (state, INS, minor, representatives).

Applied in one transaction with the event id (de-duplication: delivery is at
least once), then the message is acked by `kit.consumer`. Each applied change
also queues `dmp.consent.changed` so every replica (and the gateway) drops
cached decisions for the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.records.v1 import events_pb2 as records_events
from kit.consumer import ConsumerSpec, Delivery, PermanentFailureError
from kit.db import transaction, utcnow
from kit.logs import get_logger
from kit.nats import STREAMS
from services.consent import published
from services.consent.models import (
    legal_representatives,
    processed_events,
    record_states,
)

log = get_logger(__name__)

SUBJECT_CREATED = "dmp.records.dossier.created"
STATE_SUBJECTS = (
    "dmp.records.dossier.closed",
    "dmp.records.dossier.reactivated",
    "dmp.records.dossier.terms_accepted",
)


def consumer_spec(durable: str) -> ConsumerSpec:
    return ConsumerSpec(
        stream=STREAMS["records"].name,
        durable=durable,
        filter_subject="dmp.records.dossier.>",
    )


class RecordProjection:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        invalidate: Callable[[str], None],
        on_commit: Callable[[], None],
        on_created: Callable[[records_events.DossierCreated], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._invalidate = invalidate
        self._on_commit = on_commit
        # What a creation gives besides the state (the creator's grant, the oppositions
        # asked at creation): run before the projection commits, idempotent, so a failure
        # is redelivered and retried.
        self._on_created = on_created

    async def handle(self, delivery: Delivery) -> None:
        subject = delivery.subject
        if subject != SUBJECT_CREATED and subject not in STATE_SUBJECTS:
            return  # other dossier events (e.g. purged) do not change decisions yet
        try:
            if subject == SUBJECT_CREATED:
                created = records_events.DossierCreated.FromString(delivery.data)
                header, dossier = created.header, created.dossier
            else:
                changed = records_events.DossierStateChanged.FromString(delivery.data)
                header, dossier = changed.header, changed.dossier
        except DecodeError as exc:
            raise PermanentFailureError(subject) from exc
        event_id = delivery.event_id or header.event_id
        if not dossier or not event_id:
            raise PermanentFailureError(subject)
        if subject == SUBJECT_CREATED and self._on_created is not None:
            await self._on_created(created)
        now = utcnow()
        async with transaction(self._sessions) as session:
            seen = (
                await session.execute(
                    select(processed_events.c.event_id).where(
                        processed_events.c.event_id == event_id
                    )
                )
            ).first()
            if seen is not None:
                return
            await session.execute(
                processed_events.insert().values(
                    event_id=event_id, subject=subject, process_time=now
                )
            )
            if subject == SUBJECT_CREATED:
                await _apply_created(session, created, now)
            else:
                await _apply_state(session, changed, now)
            await published.consent_changed(
                session, dossier, "", header.actor, by_patient=False, when=now
            )
        self._invalidate(dossier)
        self._on_commit()
        log.info("record_projected", subject=subject, dossier=dossier)


async def _apply_created(
    session: AsyncSession, event: records_events.DossierCreated, now: datetime
) -> None:
    dossier = event.dossier
    exists = (
        await session.execute(
            select(record_states.c.dossier).where(record_states.c.dossier == dossier)
        )
    ).first()
    values = {
        "patient_ins": event.patient_ins,
        "state": event.state,
        "minor": event.minor,
        "update_time": now,
    }
    if exists:
        await session.execute(
            update(record_states).where(record_states.c.dossier == dossier).values(**values)
        )
    else:
        await session.execute(record_states.insert().values(dossier=dossier, **values))
    await session.execute(
        delete(legal_representatives).where(legal_representatives.c.dossier == dossier)
    )
    for rep in event.legal_representatives:
        await session.execute(
            legal_representatives.insert().values(
                dossier=dossier,
                representative_id=rep.representative_id,
                ins=rep.ins,
                access_end_time=(
                    rep.access_end_time.ToDatetime(tzinfo=UTC)
                    if rep.HasField("access_end_time")
                    else None
                ),
            )
        )


async def _apply_state(
    session: AsyncSession, event: records_events.DossierStateChanged, now: datetime
) -> None:
    result = await session.execute(
        update(record_states)
        .where(record_states.c.dossier == event.dossier)
        .values(state=event.state, update_time=now)
    )
    if not getattr(result, "rowcount", 0):
        # State change of a record whose creation this consumer never saw (stream
        # truncated): keep what the event tells; minors' representatives are unknown.
        await session.execute(
            record_states.insert().values(
                dossier=event.dossier,
                patient_ins=event.patient_ins,
                state=event.state,
                minor=False,
                update_time=now,
            )
        )
