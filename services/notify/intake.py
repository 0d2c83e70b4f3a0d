"""Turns a consumed event into notification rows, committed before the ack.

Idempotency: rows are unique per (event id, recipient, channel), the event id
being the one inside the payload (a republish under another `Nats-Msg-Id`
is still the same event). A redelivered event finds its rows and adds
nothing; a replayed one (from the dead-letter subject) also resets its failed
rows to pending so they are attempted again.

Events name the dossier only: the recipients come from notify's own
projection of `dossier.created`. An event whose dossier is not known yet
raises `DossierNotKnownError`, so the consumer redelivers it later (NAK with
backoff) instead of dropping it.

Where to reach them comes from notify's own contact table, filled by default
from the contact given at sign-up (`dmp.identity.contact.given`) or at the
record's creation (`dossier.created` carries it: stored before that event's
creation notice is queued, in the same transaction); SetContactPreferences
only changes it. An emergency access is keyed by its emergency session
(`Event.notice_key`), so a session is alerted once per recipient and channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.notify.v1 import notify_pb2
from kit.consumer import Delivery
from kit.db import transaction, utcnow
from kit.logs import get_logger
from kit.tracing import inject_headers
from kit.writelock import WriteLock
from services.notify import event_templates, models, reminders, validation
from services.notify.consumed import (
    DOCUMENT_ADDED,
    DOCUMENT_VISIBILITY_CHANGED,
    REPLAY_PREFIX,
    VACCINATION_RECORDED,
    DossierFacts,
    Event,
    Notice,
    decode,
    kept_payload,
    original_subject,
)
from services.notify.repository import dossiers, notifications, preferences

log = get_logger(__name__)

#: Kinds not announced to a minor's legal representatives. Document events do
#: not say whether a document is hidden from them (INVISIBLE_REPRESENTANTS_LEGAUX,
#: e.g. care a minor may keep confidential), so none is announced to them.
NOT_FOR_REPRESENTATIVES = frozenset({notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED})


#: Kinds sent on every channel the patient has, whatever their preferences say.
ALL_CHANNELS = frozenset(
    {
        notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS,
        notify_pb2.NOTIFICATION_KIND_ACTIVATION_REISSUED,
    }
)


class DossierNotKnownError(Exception):
    """The dossier's creation event has not been projected yet: retry later."""


def channels_for(kind: int, email: str | None, phone: str | None, choices_json: str) -> list[str]:
    """Channels of `kind` for these preferences.

    Emergencies and support reissues go to every channel the patient has. A kind the patient never
    configured goes by e-mail (else SMS); an empty choice means "do not tell me".
    """
    available = [
        channel
        for channel, contact in ((models.CHANNEL_EMAIL, email), (models.CHANNEL_SMS, phone))
        if contact
    ]
    if kind in ALL_CHANNELS:
        return available
    choices: dict[str, list[str]] = json.loads(choices_json or "{}")
    name = notify_pb2.NotificationKind.Name(kind)  # type: ignore[arg-type]
    if name not in choices:
        return available[:1]
    wanted = {
        models.CHANNEL_EMAIL if c == "CHANNEL_EMAIL" else models.CHANNEL_SMS for c in choices[name]
    }
    return [c for c in available if c in wanted]


def _encode_reps(facts: DossierFacts) -> str:
    return json.dumps(
        [
            {
                "ins": r.ins,
                "access_end_time": r.access_end_time.isoformat() if r.access_end_time else None,
            }
            for r in facts.representatives or ()
        ]
    )


class Intake:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_commit: Callable[[], None],
        write_lock: WriteLock | None = None,
        *,
        reminder_policy: reminders.ReminderPolicy | None = None,
        on_reminder_due: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_commit = on_commit
        self._write_lock = write_lock or WriteLock(enabled=False)
        self._reminder_policy = reminder_policy or reminders.ReminderPolicy()
        self._on_reminder_due = on_reminder_due

    async def handle(self, delivery: Delivery) -> None:
        subject = original_subject(delivery.subject)
        replay = delivery.subject.startswith(REPLAY_PREFIX)
        event = decode(subject, delivery.data, delivery.event_id)
        if event is None:
            return
        async with self._write_lock, transaction(self._sessions) as session:
            created = await self._apply(session, event, delivery.data, replay)
        if created:
            self._on_commit()
        log.info(
            "event_intake",
            subject=subject,
            event_id=event.event_id,
            rows=created,
            replay=replay,
            delivered=delivery.num_delivered,
        )

    async def _apply(
        self, session: AsyncSession, event: Event, payload: bytes, replay: bool
    ) -> int:
        if event.facts is not None:
            await _project(session, event.dossier, event.facts)
        for given in event.contacts:
            stored = await preferences.give(
                session,
                given.ins,
                email=given.email or None,
                mobile_phone=given.mobile_phone or None,
                source=given.source,
                now=utcnow(),
            )
            log.info("contact_given", source=given.source, stored=stored)
        if event.booster is not None:
            return await self._booster(session, event, payload, replay)
        notice = event.notice
        if notice is None:
            return 0
        key = event.notice_key or event.event_id
        if event.subject in (DOCUMENT_ADDED, DOCUMENT_VISIBILITY_CHANGED):
            # Checked first: a hidden document of an unknown dossier must wait too.
            await _recipients(session, event.dossier, notice.kind)
            released_key = await _document_gate(session, event)
            if released_key is None:
                return 0
            key = released_key
        kept = kept_payload(event.subject, payload)
        return await _notify(session, event, notice, key=key, payload=kept, replay=replay)

    async def _booster(
        self, session: AsyncSession, event: Event, payload: bytes, replay: bool
    ) -> int:
        """Schedule (or cancel) the booster reminder; its notifications come when it is due."""
        assert event.booster is not None
        await _recipients(session, event.dossier, REMINDER_KIND)  # a dossier not known yet waits
        now = utcnow()
        if replay:  # a dead-lettered reminder, replayed: its failed sends are attempted again
            await notifications.retry_failed(session, reminders.key_of(event.event_id), now)
        due = await reminders.schedule(
            session,
            dossier=event.dossier,
            event_id=event.event_id,
            booster=event.booster,
            payload=payload,
            policy=self._reminder_policy,
            now=now,
        )
        if due and self._on_reminder_due is not None:
            self._on_reminder_due()
        return 0


REMINDER_KIND = notify_pb2.NOTIFICATION_KIND_VACCINATION_REMINDER


async def queue_reminder(session: AsyncSession, due: reminders.DueReminder) -> int:
    """The notification rows of a due booster reminder, as for any other notice."""
    event = Event(
        VACCINATION_RECORDED,
        due.event_id,
        due.dossier,
        reminders.shown_time(due.booster_date),
    )
    notice = Notice(REMINDER_KIND, event_templates.DEFAULT)
    return await _notify(
        session,
        event,
        notice,
        key=reminders.key_of(due.event_id),
        payload=due.payload,
        replay=False,
    )


async def _project(session: AsyncSession, dossier: str, facts: DossierFacts) -> None:
    now = utcnow()
    if await dossiers.get(session, dossier) is None:
        await dossiers.add(
            session,
            dossier,
            patient_ins=facts.patient_ins,
            minor=bool(facts.minor),
            representatives=_encode_reps(facts),
            now=now,
        )
        return
    values: dict[str, object] = {"patient_ins": facts.patient_ins, "update_time": now}
    if facts.minor is not None:
        values["minor"] = facts.minor
    if facts.representatives is not None:
        values["representatives"] = _encode_reps(facts)
    await dossiers.change(session, dossier, **values)


async def _recipients(session: AsyncSession, dossier: str, kind: int) -> list[tuple[str, bool]]:
    """(INS, is a legal representative) of whoever should hear about `dossier`."""
    row = await dossiers.get(session, dossier)
    if row is None:
        raise DossierNotKnownError(dossier)
    recipients = [(str(row["patient_ins"]), False)]
    if row["minor"] and kind not in NOT_FOR_REPRESENTATIVES:
        now = utcnow()
        for rep in json.loads(row["representatives"]):
            end = rep.get("access_end_time")
            if end is not None and datetime.fromisoformat(end) <= now:
                continue  # the patient came of age: their representatives no longer act
            if rep["ins"] != row["patient_ins"]:
                recipients.append((str(rep["ins"]), True))
    return recipients


async def _document_gate(session: AsyncSession, event: Event) -> str | None:
    """The key under which to announce the document now, or None while it stays hidden.

    The key is always the `document.added` event id, whether the announcement
    comes with the addition or with the release: a redelivered or replayed
    release finds the same rows.
    """
    now = utcnow()
    held = await dossiers.held(session, event.document)
    if event.subject == DOCUMENT_ADDED:
        if not event.hidden:
            return event.event_id
        if held is None:
            await dossiers.hold(
                session,
                event.document,
                dossier=event.dossier,
                added_event_id=event.event_id,
                released=False,
                now=now,
            )
            return None
        if held["added_event_id"] is None:
            await dossiers.change_held(
                session, event.document, added_event_id=event.event_id, update_time=now
            )
        # Released before this (redelivered) addition was consumed: announce now.
        return event.event_id if held["released"] else None
    # visibility_changed
    if event.hidden:
        return None
    if held is None:
        # Never hidden (announced when added), or the addition is still to come.
        await dossiers.hold(
            session,
            event.document,
            dossier=event.dossier,
            added_event_id=None,
            released=True,
            now=now,
        )
        return None
    if not held["released"]:
        await dossiers.change_held(session, event.document, released=True, update_time=now)
    added = held["added_event_id"]
    return str(added) if added is not None else None


async def _notify(
    session: AsyncSession, event: Event, notice: Notice, *, key: str, payload: bytes, replay: bool
) -> int:
    recipients = await _recipients(session, event.dossier, notice.kind)
    now = utcnow()
    trace_context = json.dumps(inject_headers())
    existing = await notifications.recipients_of(session, key)
    if replay and existing:
        await notifications.retry_failed(session, key, now)
    created = 0
    for ins, representative in recipients:
        prefs = await preferences.get(session, ins)
        if prefs is None:
            continue
        variant = notice.variant
        if representative:
            variant = f"{variant}.{event_templates.REPRESENTATIVE}"
        for channel in channels_for(
            notice.kind, prefs["email"], prefs["mobile_phone"], prefs["choices"]
        ):
            if (ins, channel) in existing:
                continue
            contact = prefs["email"] if channel == models.CHANNEL_EMAIL else prefs["mobile_phone"]
            proto_channel = (
                notify_pb2.CHANNEL_EMAIL
                if channel == models.CHANNEL_EMAIL
                else notify_pb2.CHANNEL_SMS
            )
            await notifications.queue(
                session,
                event_id=key,
                recipient=ins,
                channel=channel,
                kind=notify_pb2.NotificationKind.Name(notice.kind),  # type: ignore[arg-type]
                variant=variant,
                urgent=notice.urgent,
                occur_time=event.occur_time,
                source_subject=event.subject,
                source_payload=payload,
                masked_destination=validation.mask(proto_channel, contact),
                trace_context=trace_context,
                now=now,
            )
            created += 1
    return created
