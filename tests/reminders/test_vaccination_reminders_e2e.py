"""Vaccination booster reminders through the launcher-started gateway, on a platform of
their own whose clock moves by days: the reminder is sent once when due, although notify and
NATS were restarted in between; it is cancelled when the booster is recorded first; the
message names no vaccine."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import grpc
import pytest
import sqlalchemy as sa

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from kit.clock import use
from services.notify.models import vaccination_reminders
from services.notify.templates import PARIS
from tests.e2e.helpers import mails_to, new_record, patient_md, records, rid
from tests.faults.harness import kill_nats, start_nats
from tests.fixtures import sql
from tests.fixtures.records import make_ins
from tests.waits import until

# One worker boots the package's platform (`live`) for both tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reminders")]

R = records_pb2
N = notify_pb2
SUBJECT = "Rappel de vaccination"
WITHIN_S = 30.0


def _today(live: LiveStack) -> date:
    return live.clock.now().astimezone(PARIS).date()


def _date(day: date) -> R.Date:
    return R.Date(year=day.year, month=day.month, day=day.day)


async def _patients_admitted(live: LiveStack) -> None:
    """Until the gateway verifies patient sessions again: after NATS came back, or once the
    clock jumped, its revocation list is stale (UNAVAILABLE) until its next sync."""
    ins = make_ins()
    stub = notify_pb2_grpc.NotifyServiceStub(live.patient_channel())
    request = N.GetContactPreferencesRequest(name=f"patients/{ins}/contactPreferences")

    async def admitted() -> bool:
        try:
            await stub.GetContactPreferences(request, metadata=patient_md(live, ins), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code() != grpc.StatusCode.UNAVAILABLE
        return True

    await until(admitted, "patient sessions verified", within_s=WITHIN_S)


async def _patient(live: LiveStack) -> tuple[str, str, str]:
    """(dossier, INS, e-mail) of a new record whose patient gave an e-mail."""
    await _patients_admitted(live)
    dossier, ins = await new_record(live)
    email = f"rappel.{uuid.uuid4().hex[:10]}@exemple.fr"
    await notify_pb2_grpc.NotifyServiceStub(live.patient_channel()).SetContactPreferences(
        N.SetContactPreferencesRequest(
            contact_preferences=N.ContactPreferences(
                name=f"patients/{ins}/contactPreferences", email=email
            ),
            request_id=rid(),
        ),
        metadata=patient_md(live, ins),
        timeout=10,
    )
    return dossier, ins, email


async def _vaccinate(
    live: LiveStack, dossier: str, code: str, given: date, booster: date | None = None
) -> str:
    vaccination = R.Vaccination(
        vaccine=R.CodedConcept(code=code, display=f"Vaccin {code} QWERTY"),
        administration_date=_date(given),
        lot_number="LOT-1",
    )
    if booster is not None:
        vaccination.booster_date.CopyFrom(_date(booster))
    written = await records(live.card_channel("doctor")).CreateVaccination(
        R.CreateVaccinationRequest(parent=dossier, vaccination=vaccination, request_id=rid()),
        timeout=15,
    )
    return str(written.name)


async def _status(live: LiveStack, vaccination: str) -> str | None:
    """notify's schedule row (the marker that notify took the event in before a restart)."""
    rows = await sql.fetch(
        live.database_url("notify"),
        sa.select(vaccination_reminders.c.status).where(
            vaccination_reminders.c.vaccination == vaccination
        ),
    )
    return str(rows[0].status) if rows else None


async def _wait_status(live: LiveStack, vaccination: str, status: str) -> None:
    async def reached() -> bool:
        return await _status(live, vaccination) == status

    await until(reached, f"{vaccination} {status}", within_s=WITHIN_S)


async def _reminders_recorded_sent(live: LiveStack, ins: str, count: int) -> None:
    """Until notify recorded `count` reminders as sent: a process killed between the relay's
    acceptance and that record sends again (same Message-ID, the documented window)."""
    stub = notify_pb2_grpc.NotifyServiceStub(live.patient_channel())

    async def recorded() -> bool:
        try:
            listed = await stub.ListNotifications(
                N.ListNotificationsRequest(parent=f"patients/{ins}", page_size=100),
                metadata=patient_md(live, ins),
                timeout=10,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:  # sessions not verifiable yet
                return False
            raise
        sent = [
            n
            for n in listed.notifications
            if n.kind == N.NOTIFICATION_KIND_VACCINATION_REMINDER
            and n.status == N.DELIVERY_STATUS_SENT
        ]
        return len(sent) == count

    await until(recorded, f"{count} reminder(s) recorded sent", within_s=WITHIN_S)


def _reminders(live: LiveStack, email: str) -> list[str]:
    out = []
    for message in mails_to(live.mail_dir, email):
        if SUBJECT in str(message["Subject"]):
            body = message.get_body(preferencelist=("plain",))
            out.append(str(body.get_content()) if body is not None else "")
    return out


async def _wait_reminders(live: LiveStack, email: str, count: int) -> list[str]:
    await until(
        lambda: len(_reminders(live, email)) >= count, f"{count} reminder(s)", within_s=WITHIN_S
    )
    return _reminders(live, email)


async def test_reminder_sent_once_at_due_time_across_notify_and_nats_restarts(
    live: LiveStack,
) -> None:
    with use(live.clock):
        dossier, ins, email = await _patient(live)
        today = _today(live)
        booster = today + timedelta(days=20)  # reminded 7 days before, at 09:00 in Paris
        first = await _vaccinate(live, dossier, "J07AM51", today, booster)
        await _wait_status(live, first, "scheduled")
        # Both restarted while the reminder waits: it lives in notify's database.
        await live.kill_service("notify")
        await asyncio.to_thread(kill_nats, live)
        await asyncio.to_thread(start_nats, live)
        await live.start_service("notify")
        live.advance_clock(timedelta(days=14))
        (body,) = await _wait_reminders(live, email, 1)
        assert booster.strftime("%d/%m/%Y") in body
        assert "QWERTY" not in body
        assert "J07AM51" not in body
        # Once: notify restarted again, more days pass; a later reminder (another vaccine,
        # due at once) goes out, and the first is not sent again.
        await _reminders_recorded_sent(live, ins, 1)
        await live.restart_service("notify", kill=True)
        live.advance_clock(timedelta(days=1))
        later = _today(live)
        await _vaccinate(live, dossier, "J07BB02", later, later + timedelta(days=3))
        await _reminders_recorded_sent(live, ins, 2)
        assert len(_reminders(live, email)) == 2
        assert await _status(live, first) == "queued"


async def test_reminder_cancelled_when_the_booster_is_recorded_first(live: LiveStack) -> None:
    with use(live.clock):
        dossier, _ins, email = await _patient(live)
        today = _today(live)
        first = await _vaccinate(
            live, dossier, "J07AM51", today - timedelta(days=300), today + timedelta(days=20)
        )
        await _wait_status(live, first, "scheduled")
        # The booster is given before the reminder is due.
        await _vaccinate(live, dossier, "J07AM51", today)
        await _wait_status(live, first, "cancelled")
        live.advance_clock(timedelta(days=14))  # past the first's due time
        # Marker: a reminder due now (another vaccine) goes out; the cancelled one never did.
        await _vaccinate(live, dossier, "J07BB02", _today(live), _today(live) + timedelta(days=3))
        reminders = await _wait_reminders(live, email, 1)
        assert len(reminders) == 1
        assert await _status(live, first) == "cancelled"
