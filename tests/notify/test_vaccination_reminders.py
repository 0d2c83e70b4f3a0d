"""Vaccination booster reminders in notify: the durable schedule (a table, fed by records'
`vaccination.recorded`), fired by its poller on `kit.clock`, across a restart of notify, once
even with two pollers, cancelled by the booster recorded first; and the advance directives
notice. Real JetStream (notify's own nats-server), real database, the SMTP sink; time is a
ShiftedClock moved by days instead of waited for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import nats
import pytest_asyncio
from sqlalchemy import func, select

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import events_pb2 as records_events
from dmp.records.v1 import records_pb2
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.testing import principals
from dmp_dev.testing.databases import DatabaseFactory
from kit import clock
from kit import nats as kit_nats
from kit.server import RunningServer, start_app
from services.notify import event_templates, models
from services.notify.app import NotifyApp
from services.notify.intake import queue_reminder
from services.notify.reminders import ReminderPolicy, ReminderScheduler
from services.notify.templates import PARIS
from tests.notify.conftest import events_settings
from tests.notify.eventkit import (
    dossier_created,
    header,
    new_dossier,
    new_email,
    new_id,
    new_ins,
    prefs,
    publish,
)
from tests.waits import consumed_through, until

K = notify_pb2
RECORDED = "dmp.records.vaccination.recorded"
SET = "/dmp.notify.v1.NotifyService/SetContactPreferences"
REMINDER_SUBJECT = "Rappel de vaccination"


class Notify:
    """One notify process of these tests, restartable on the same database and consumers."""

    def __init__(self, url: str, nats_url: str, smtp: MailSink, sms: Path) -> None:
        self.settings = events_settings(
            url,
            nats_url,
            smtp,
            sms,
            consumer_prefix=f"r{uuid.uuid4().hex[:10]}",
            reminder_poll_s=0.05,
        )
        self.smtp = smtp
        self.running: RunningServer | None = None

    @property
    def app(self) -> NotifyApp:
        assert self.running is not None
        app = self.running.app
        assert isinstance(app, NotifyApp)
        return app

    async def start(self) -> None:
        self.running = await start_app(NotifyApp(self.settings))
        await self.app.wait_events_ready()

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop(0.5)
            self.running = None

    async def patient(self) -> tuple[str, str, str]:
        """(INS, dossier, e-mail) of a patient whose record notify knows."""
        ins, dossier, email = new_ins(), new_dossier(), new_email()
        async with grpc.aio.insecure_channel(self.running.target) as channel:  # type: ignore[union-attr]
            stub = notify_pb2_grpc.NotifyServiceStub(channel)
            await stub.SetContactPreferences(
                K.SetContactPreferencesRequest(
                    contact_preferences=prefs(ins, email), request_id=new_id()
                ),
                metadata=principals.metadata(principals.patient(ins), SET),
            )
        js = self.app.js
        assert js is not None
        await publish(js, "dmp.records.dossier.created", dossier_created(dossier, ins))
        await until(lambda: len(self.smtp.messages_to(email)) == 1, "creation notice")
        return ins, dossier, email

    async def recorded(
        self,
        dossier: str,
        *,
        booster: date | None = None,
        fulfils: tuple[str, ...] = (),
        event_id: str | None = None,
        vaccination: str | None = None,
    ) -> tuple[str, str]:
        """Publish a vaccination.recorded and wait until notify handled it; (name, event id)."""
        name = vaccination or f"{dossier}/vaccinations/{new_id()}"
        event = records_events.VaccinationRecorded(
            header=header(event_id), dossier=dossier, vaccination=name, fulfils=list(fulfils)
        )
        if booster is not None:
            event.booster_date.CopyFrom(
                records_pb2.Date(year=booster.year, month=booster.month, day=booster.day)
            )
        js = self.app.js
        assert js is not None
        ack = await publish(js, RECORDED, event)
        await consumed_through(self.app.consumers, ack, RECORDED)
        return name, event.header.event_id

    async def status(self, vaccination: str) -> str | None:
        async with self.app.db() as session:
            return await session.scalar(
                select(models.vaccination_reminders.c.status).where(
                    models.vaccination_reminders.c.vaccination == vaccination
                )
            )

    async def reminder_rows(
        self, ins: str, kind: str = "NOTIFICATION_KIND_VACCINATION_REMINDER"
    ) -> int:
        n = models.notifications.c
        async with self.app.db() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(models.notifications)
                .where(n.recipient == ins, n.kind == kind)
            )
        return int(found or 0)

    def reminders_to(self, email: str) -> list[str]:
        return [m.text for m in self.smtp.messages_to(email) if REMINDER_SUBJECT in m.subject]


@pytest_asyncio.fixture(loop_scope="session")
async def notify(
    databases: DatabaseFactory, notify_nats_url: str, smtp_sink: MailSink, sms_sink_path: Path
) -> AsyncIterator[Notify]:
    nc = await nats.connect(notify_nats_url)
    for owner in ("identity", "records", "consent", "notify"):  # every stream notify reads
        await kit_nats.ensure_stream(nc.jetstream(), kit_nats.STREAMS[owner])
    await nc.drain()
    url = await databases.migrated("notify", "notify_reminders")
    with clock.use(clock.ShiftedClock(base=clock.current())):
        proc = Notify(url, notify_nats_url, smtp_sink, sms_sink_path)
        await proc.start()
        try:
            yield proc
        finally:
            await proc.stop()


def _shifted() -> clock.ShiftedClock:
    current = clock.current()
    assert isinstance(current, clock.ShiftedClock)
    return current


def _today() -> date:
    return clock.now().astimezone(PARIS).date()


def test_due_time_is_lead_days_before_at_the_hour_in_paris() -> None:
    policy = ReminderPolicy(lead_days=7, hour=9)
    winter = policy.due_time(date(2027, 1, 15))
    assert winter.astimezone(UTC) == datetime(2027, 1, 8, 8, 0, tzinfo=UTC)
    summer = policy.due_time(date(2027, 7, 15))
    assert summer.astimezone(UTC) == datetime(2027, 7, 8, 7, 0, tzinfo=UTC)


def test_the_reminder_names_no_vaccine_and_gives_the_date() -> None:
    kind = K.NOTIFICATION_KIND_VACCINATION_REMINDER
    when = datetime(2027, 3, 12, 11, 0, tzinfo=UTC)
    text = event_templates.email(kind, event_templates.DEFAULT, when, urgent=False)
    assert "12/03/2027" in text.body
    assert "rappel de vaccination" in text.body
    sms = event_templates.sms(kind, event_templates.DEFAULT, urgent=False)
    assert "rappel de vaccination" in sms
    rep = event_templates.email(
        kind, f"{event_templates.DEFAULT}.{event_templates.REPRESENTATIVE}", when, urgent=False
    )
    assert "personne que vous représentez" in rep.body


async def test_reminder_sent_once_at_due_time_across_a_restart(notify: Notify) -> None:
    ins, dossier, email = await notify.patient()
    booster = _today() + timedelta(days=30)
    vaccination, event_id = await notify.recorded(dossier, booster=booster)
    assert await notify.status(vaccination) == models.REMINDER_SCHEDULED
    # Not due yet: a poll now leaves it scheduled. (Counts of a poll are not looked at: this
    # process's new consumers also replay the stream's earlier events, other tests' included.)
    await notify.app.reminders.run_due()  # type: ignore[union-attr]
    assert await notify.status(vaccination) == models.REMINDER_SCHEDULED
    # notify restarts; the schedule is in its database, not in the process.
    await notify.stop()
    await notify.start()
    _shifted().advance(timedelta(days=24))  # past booster - 7 days, 09:00 Paris
    await until(lambda: len(notify.reminders_to(email)) == 1, "the reminder e-mail")
    (body,) = notify.reminders_to(email)
    assert booster.strftime("%d/%m/%Y") in body
    assert await notify.status(vaccination) == models.REMINDER_QUEUED
    # Once: another poll, a restart and the same event again change nothing.
    await notify.app.reminders.run_due()  # type: ignore[union-attr]
    await notify.stop()
    await notify.start()
    await notify.recorded(dossier, booster=booster, event_id=event_id, vaccination=vaccination)
    await notify.app.reminders.run_due()  # type: ignore[union-attr]
    assert await notify.reminder_rows(ins) == 1
    assert len(notify.reminders_to(email)) == 1


async def test_booster_recorded_first_cancels_the_reminder(notify: Notify) -> None:
    ins, dossier, _email = await notify.patient()
    first, _ = await notify.recorded(dossier, booster=_today() + timedelta(days=30))
    # The booster itself is recorded before the reminder is due (records names the first).
    await notify.recorded(dossier, fulfils=(first,))
    assert await notify.status(first) == models.REMINDER_CANCELLED
    # Out of order: a booster seen before the vaccination it fulfils.
    late = f"{dossier}/vaccinations/{new_id()}"
    await notify.recorded(dossier, fulfils=(late,))
    await notify.recorded(dossier, booster=_today() + timedelta(days=30), vaccination=late)
    assert await notify.status(late) == models.REMINDER_CANCELLED
    _shifted().advance(timedelta(days=40))
    await notify.app.reminders.run_due()  # type: ignore[union-attr]
    assert await notify.status(first) == models.REMINDER_CANCELLED
    assert await notify.status(late) == models.REMINDER_CANCELLED
    assert await notify.reminder_rows(ins) == 0


async def test_two_pollers_queue_a_due_reminder_once(notify: Notify) -> None:
    ins, dossier, _email = await notify.patient()
    vaccination, _ = await notify.recorded(dossier, booster=_today() + timedelta(days=60))
    app = notify.app
    pollers = [
        ReminderScheduler(
            app.db,
            queue=queue_reminder,
            on_queued=lambda: None,
            poll_s=60,
            skip_locked=not app.notify_settings.database_url.startswith("sqlite"),
        )
        for _ in range(2)
    ]
    await app.reminders.stop()  # type: ignore[union-attr]  # only the two below poll
    try:
        _shifted().advance(timedelta(days=54))
        results = await asyncio.gather(*(p.run_due() for p in pollers))
        assert sum(results) >= 1
        assert await notify.status(vaccination) == models.REMINDER_QUEUED
        assert await notify.reminder_rows(ins) == 1  # one channel (e-mail), one row
    finally:
        app.reminders.start()  # type: ignore[union-attr]


async def test_each_advance_directives_revision_is_told_once_without_content(
    notify: Notify,
) -> None:
    ins, dossier, email = await notify.patient()
    js = notify.app.js
    assert js is not None
    for revision in ("1", "2"):
        event = records_events.AdvanceDirectivesChanged(
            header=header(),
            dossier=dossier,
            revision_id=revision,
            author_kind=records_pb2.AUTHOR_KIND_PROFESSIONAL,
        )
        await publish(js, "dmp.records.advance_directives.changed", event)
        # The same event again (a republish under another message id): nothing more.
        await publish(js, "dmp.records.advance_directives.changed", event)

    def told() -> list[str]:
        return [m.text for m in notify.smtp.messages_to(email) if "Directives" in m.subject]

    await until(lambda: len(told()) == 2, "two directives notices")
    ack = await publish(js, "dmp.records.advance_directives.changed", event)
    await consumed_through(notify.app.consumers, ack, "dmp.records.advance_directives.changed")
    assert await notify.reminder_rows(ins, "NOTIFICATION_KIND_ADVANCE_DIRECTIVES_CHANGED") == 2
    assert len(told()) == 2
    assert all("directives anticipées" in body and "modifiées" in body for body in told())
