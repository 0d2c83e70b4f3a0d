"""Notifications on by default: the contact given at sign-up or at the record's creation
reaches notify through events (no SetContactPreferences call), and one emergency session
alerts once per channel. Real JetStream, real SMTP sink, the SMS file sink."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from dmp.notify.v1 import notify_pb2
from dmp_dev.testing import principals
from services.notify import models
from services.notify.consumed import emergency_key
from tests.fixtures.notify import sms_messages
from tests.notify.conftest import EventsEnv
from tests.notify.eventkit import (
    access,
    contact_given,
    document,
    dossier_created,
    eventually,
    new_dossier,
    new_email,
    new_id,
    new_ins,
    prefs,
    publish,
)
from tests.notify.test_event_notifications import (
    assert_no_medical_content,
    handled,
    list_for,
    set_prefs,
    settled,
)

GET = "/dmp.notify.v1.NotifyService/GetContactPreferences"
K = notify_pb2


def new_phone() -> str:
    return "+3361" + str(uuid.uuid4().int)[:7]


async def stored(env: EventsEnv, ins: str) -> notify_pb2.ContactPreferences:
    got: notify_pb2.ContactPreferences = await env.stub.GetContactPreferences(
        notify_pb2.GetContactPreferencesRequest(name=f"patients/{ins}/contactPreferences"),
        metadata=principals.metadata(principals.patient(ins), GET),
    )
    return got


async def test_contact_given_at_creation_gets_the_creation_notice_once(
    notify_events: EventsEnv,
) -> None:
    env = notify_events
    ins, dossier, email, phone = new_ins(), new_dossier(), new_email(), new_phone()
    created = dossier_created(dossier, ins, email=email, phone=phone)
    # The same event twice (a republish under another Nats-Msg-Id): one notice.
    await publish(env.js, "dmp.records.dossier.created", created)
    second = await publish(env.js, "dmp.records.dossier.created", created)
    await handled(env, "dmp.records.dossier.created", second)
    await settled(env, ins)
    mails = env.smtp.messages_to(email)
    assert len(mails) == 1
    assert mails[0].subject == "Votre DMP a été créé"
    assert_no_medical_content(mails[0].text, dossier, ins)
    # Not configured: the first channel only (e-mail), as for a patient who set no choice.
    assert sms_messages(env.sms_path, phone) == []
    given = await stored(env, ins)
    assert (given.email, given.mobile_phone, list(given.choices)) == (email, phone, [])
    # The row keeps the event for its dead letter, not the contact data it carried.
    async with env.app.db() as session:
        (kept,) = (
            await session.execute(
                select(models.notifications.c.source_payload).where(
                    models.notifications.c.recipient == ins
                )
            )
        ).scalars()
    assert email.encode() not in kept
    assert phone.encode() not in kept
    assert dossier.encode() in kept
    # A document follows the same default.
    await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="document e-mail")


async def test_sign_up_contact_replaces_the_creation_one_and_the_patient_has_the_last_word(
    notify_events: EventsEnv,
) -> None:
    env = notify_events
    ins, dossier = new_ins(), new_dossier()
    at_desk, at_sign_up, own, late = new_email(), new_email(), new_email(), new_email()
    phone = new_phone()
    created = dossier_created(dossier, ins, email=at_desk)
    await publish(env.js, "dmp.records.dossier.created", created)
    await eventually(lambda: len(env.smtp.messages_to(at_desk)) == 1, what="creation notice")
    # Sign-up: the patient's own e-mail replaces the desk's; the phone adds to it.
    ack = await publish(env.js, "dmp.identity.contact.given", contact_given(ins, at_sign_up, phone))
    await handled(env, "dmp.identity.contact.given", ack)
    assert (await stored(env, ins)).email == at_sign_up
    await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(at_sign_up)) == 1, what="document e-mail")
    # A creation contact consumed late (another record's event, same patient) is weaker.
    ack = await publish(
        env.js,
        "dmp.records.dossier.created",
        dossier_created(new_dossier(), ins, email=new_email()),
    )
    await handled(env, "dmp.records.dossier.created", ack)
    assert (await stored(env, ins)).email == at_sign_up
    # The patient's own preferences win over any later event.
    await set_prefs(env, prefs(ins, own, phone))
    ack = await publish(env.js, "dmp.identity.contact.given", contact_given(ins, late))
    await handled(env, "dmp.identity.contact.given", ack)
    assert (await stored(env, ins)).email == own
    await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(own)) == 1, what="document to own e-mail")
    await settled(env, ins)
    assert env.smtp.messages_to(late) == []
    assert len(env.smtp.messages_to(at_desk)) == 1


async def test_malformed_contact_data_is_dropped_not_stored(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, phone = new_ins(), new_phone()
    ack = await publish(
        env.js, "dmp.identity.contact.given", contact_given(ins, "pas-une-adresse", phone)
    )
    await handled(env, "dmp.identity.contact.given", ack)
    given = await stored(env, ins)
    assert (given.email, given.mobile_phone) == ("", phone)
    nobody = new_ins()
    ack = await publish(env.js, "dmp.identity.contact.given", contact_given(nobody, "x@", "06"))
    await handled(env, "dmp.identity.contact.given", ack)
    async with env.app.db() as session:
        row = (
            await session.execute(
                select(models.contact_preferences).where(
                    models.contact_preferences.c.patient == nobody
                )
            )
        ).first()
    assert row is None


async def test_one_emergency_session_alerts_once_per_channel(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email, phone = new_ins(), new_dossier(), new_email(), new_phone()
    created = dossier_created(dossier, ins, email=email, phone=phone)
    await publish(env.js, "dmp.records.dossier.created", created)
    await eventually(lambda: len(env.smtp.messages_to(email)) == 1, what="creation notice")
    session = new_id()
    # The opening (also a first access) and four reads under the same emergency rule.
    events = [access(dossier, first=True, emergency=True, session=session)]
    events += [access(dossier, emergency=True, session=session) for _ in range(4)]
    for event in events:
        last = await publish(env.js, "dmp.consent.access.recorded", event)
    await handled(env, "dmp.consent.access.recorded", last)
    await settled(env, ins)
    urgent = [m for m in env.smtp.messages_to(email) if m.subject.startswith("URGENT")]
    assert len(urgent) == 1
    assert len(sms_messages(env.sms_path, phone)) == 1
    rule = f"{dossier}/accessRules/{session}"
    async with env.app.db() as db:
        keys = (
            await db.execute(
                select(models.notifications.c.event_id).where(
                    models.notifications.c.recipient == ins,
                    models.notifications.c.kind == "NOTIFICATION_KIND_EMERGENCY_ACCESS",
                )
            )
        ).scalars()
        assert sorted(keys) == [emergency_key(rule)] * 2
    # Another session (a new opening) is another emergency: alerted again.
    ack = await publish(
        env.js, "dmp.consent.access.recorded", access(dossier, emergency=True, session=new_id())
    )
    await handled(env, "dmp.consent.access.recorded", ack)
    await eventually(lambda: len(sms_messages(env.sms_path, phone)) == 2, what="second session")
    await settled(env, ins)
    urgent = [m for m in env.smtp.messages_to(email) if m.subject.startswith("URGENT")]
    assert len(urgent) == 2
    listed = await list_for(env, ins)
    assert sum(n.kind == K.NOTIFICATION_KIND_EMERGENCY_ACCESS for n in listed.notifications) == 4
