"""Event notifications end to end: real JetStream, real SMTP sink, the SMS file sink."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from nats.js.api import PubAck
from prometheus_client import REGISTRY
from sqlalchemy import select

from dmp.notify.v1 import notify_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from dmp_dev.testing.databases import DatabaseFactory
from kit import codes
from kit.consumer import DurableConsumer
from kit.errors import error_info
from kit.server import start_app
from services.notify import models
from services.notify.app import NotifyApp
from tests.fixtures.notify import sms_messages
from tests.notify.conftest import EventsEnv, events_settings
from tests.notify.eventkit import (
    access,
    consent_changed,
    document,
    dossier_created,
    dossier_state,
    eventually,
    new_dossier,
    new_email,
    new_id,
    new_ins,
    prefs,
    publish,
)
from tests.waits import consumed_through, matches, until

SET = "/dmp.notify.v1.NotifyService/SetContactPreferences"
LIST = "/dmp.notify.v1.NotifyService/ListNotifications"
K = notify_pb2


async def set_prefs(env: EventsEnv, message: notify_pb2.ContactPreferences) -> None:
    ins = message.name.split("/")[1]
    await env.stub.SetContactPreferences(
        notify_pb2.SetContactPreferencesRequest(contact_preferences=message, request_id=new_id()),
        metadata=principals.metadata(principals.patient(ins), SET),
    )


async def patient_with_dossier(
    env: EventsEnv, *, phone: str = "", choices: dict[int, list[int]] | None = None
) -> tuple[str, str, str]:
    """(INS, dossier, e-mail) of a patient whose dossier.created was consumed."""
    ins, dossier, email = new_ins(), new_dossier(), new_email()
    await set_prefs(env, prefs(ins, email, phone, choices))
    await publish(env.js, "dmp.records.dossier.created", dossier_created(dossier, ins))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 1, what="creation e-mail")
    return ins, dossier, email


async def list_for(
    env: EventsEnv, ins: str, **fields: object
) -> notify_pb2.ListNotificationsResponse:
    response: notify_pb2.ListNotificationsResponse = await env.stub.ListNotifications(
        notify_pb2.ListNotificationsRequest(parent=f"patients/{ins}", **fields),  # type: ignore[arg-type]
        metadata=principals.metadata(principals.patient(ins), LIST),
    )
    return response


async def newest_with_status(
    env: EventsEnv, ins: str, status: int, timeout_s: float = 10.0
) -> notify_pb2.Notification:
    """The newest notification once it reaches `status`.

    The sink holds the e-mail (or the dead letter is out) just before the dispatcher
    commits the row's final status, so tests wait for that commit.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        listed = await list_for(env, ins)
        if listed.notifications and listed.notifications[0].status == status:
            return listed.notifications[0]
        assert time.monotonic() < deadline, f"newest notification never reached status {status}"
        await asyncio.sleep(0.02)


async def settled(env: EventsEnv, ins: str) -> None:
    """Until no notification of `ins` waits to be sent (each one SENT or FAILED): after the
    events in question were consumed, nothing more can reach the patient."""

    async def none_pending() -> bool:
        listed = await list_for(env, ins)
        return all(n.status != K.DELIVERY_STATUS_PENDING for n in listed.notifications)

    await until(none_pending, f"notifications of {ins} sent")


def consumer_of(env: EventsEnv, subject: str) -> DurableConsumer:
    """notify's consumer of `subject` on its source stream."""
    (found,) = [c for c in env.app.consumers if matches(c.spec.filter_subject, subject)]
    return found


def retries(env: EventsEnv, subject: str) -> float:
    """Messages of `subject` NAKed for a retry by notify's consumer so far."""
    labels = {"consumer": consumer_of(env, subject).spec.durable, "outcome": "retry"}
    return REGISTRY.get_sample_value("dmp_consumer_messages_total", labels) or 0.0


async def handled(env: EventsEnv, subject: str, ack: PubAck) -> None:
    """Until notify's consumer of `subject` has handled the message `ack` acknowledged."""
    await consumed_through(env.app.consumers, ack, subject)


def forbidden_words() -> set[str]:
    """Labels no notification may contain: professions, document classes and types."""
    words = {c.label.lower() for c in codes.table("professions").values()}
    words |= {c.label.lower() for c in codes.table("document_classes").values()}
    words |= {c.label.lower() for c in codes.table("document_types").values()}
    words |= {"diagnostic", "médecin", "pathologie", "traitement", "résultat"}
    return {w for w in words if len(w) > 3}


FORBIDDEN = forbidden_words()


def assert_no_medical_content(text: str, *identifiers: str) -> None:
    lower = text.lower()
    for word in FORBIDDEN:
        assert word not in lower, word
    for ident in identifiers:
        assert ident not in text, ident
    assert "professionnel de santé" in lower or "professionnel" not in lower


async def test_document_added_is_announced_by_email(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email = await patient_with_dossier(env)
    event = document(dossier, class_code="11")
    await publish(env.js, "dmp.records.document.added", event)
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="document e-mail")
    mail = env.smtp.messages_to(email)[-1]
    assert mail.subject == "Un nouveau document est disponible dans votre DMP"
    assert "Un nouveau document a été ajouté à votre Dossier Médical Partagé (DMP)" in mail.text
    assert "rubrique « Documents »" in mail.text
    assert_no_medical_content(
        mail.subject + mail.text, ins, dossier, event.document, event.header.event_id, "Synthèse"
    )
    assert str(mail.message["Message-ID"]).endswith("@dmp.sante.fr>")
    await newest_with_status(env, ins, K.DELIVERY_STATUS_SENT)
    listed = await list_for(env, ins)
    assert [n.kind for n in listed.notifications] == [
        K.NOTIFICATION_KIND_DOCUMENT_ADDED,
        K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE,
    ]
    newest = listed.notifications[0]
    assert newest.channel == K.CHANNEL_EMAIL
    assert newest.status == K.DELIVERY_STATUS_SENT
    assert newest.masked_destination.endswith("***.fr")
    assert newest.attempts == 1
    assert newest.HasField("send_time")
    assert newest.name.startswith(f"patients/{ins}/notifications/")


async def test_first_access_and_rule_change_follow_preferences(notify_events: EventsEnv) -> None:
    env = notify_events
    phone = "+3361" + str(uuid.uuid4().int)[:7]
    ins, dossier, email = await patient_with_dossier(
        env,
        phone=phone,
        choices={
            K.NOTIFICATION_KIND_FIRST_ACCESS: [K.CHANNEL_SMS],
            K.NOTIFICATION_KIND_ACCESS_RULES_CHANGED: [K.CHANNEL_EMAIL, K.CHANNEL_SMS],
            K.NOTIFICATION_KIND_EMERGENCY_ACCESS: [K.CHANNEL_EMAIL],
        },
    )
    first = access(dossier, first=True, rpps="810000012345")
    await publish(env.js, "dmp.consent.access.recorded", first)
    await eventually(lambda: len(sms_messages(env.sms_path, phone)) == 1, what="first access SMS")
    sms = sms_messages(env.sms_path, phone)[0]
    assert sms["text"].startswith("DMP : un professionnel de santé a accédé pour la première fois")
    assert "reference" in sms
    assert_no_medical_content(sms["text"], "810000012345", dossier, ins)
    # Not a first access, not an emergency: nothing to say.
    silent = await publish(env.js, "dmp.consent.access.recorded", access(dossier))
    # Changes by the patient, or cache invalidations without a rule: nothing either.
    await publish(env.js, "dmp.consent.changed", consent_changed(dossier, by_patient=True))
    await publish(env.js, "dmp.consent.changed", consent_changed(dossier, rule=""))
    last = await publish(env.js, "dmp.consent.changed", consent_changed(dossier, by_patient=False))
    await eventually(lambda: len(sms_messages(env.sms_path, phone)) == 2, what="rules SMS")
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="rules e-mail")
    mail = env.smtp.messages_to(email)[-1]
    assert mail.subject == "Les règles d'accès à votre DMP ont changé"
    assert "par une autre personne que vous" in mail.text
    assert_no_medical_content(mail.text, "810000000042", dossier, ins)
    # Every event above handled (in order, per consumer) and nothing left to send.
    await handled(env, "dmp.consent.access.recorded", silent)
    await handled(env, "dmp.consent.changed", last)
    await settled(env, ins)
    assert len(env.smtp.messages_to(email)) == 2
    assert len(sms_messages(env.sms_path, phone)) == 2


async def test_emergency_access_goes_everywhere_flagged_urgent(notify_events: EventsEnv) -> None:
    env = notify_events
    phone = "+3362" + str(uuid.uuid4().int)[:7]
    ins, dossier, email = await patient_with_dossier(
        env,
        phone=phone,
        # The patient asked for e-mail only: emergencies still use every channel.
        choices={K.NOTIFICATION_KIND_EMERGENCY_ACCESS: [K.CHANNEL_EMAIL]},
    )
    await publish(env.js, "dmp.consent.access.recorded", access(dossier, emergency=True))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="urgent e-mail")
    await eventually(lambda: len(sms_messages(env.sms_path, phone)) == 1, what="urgent SMS")
    mail = env.smtp.messages_to(email)[-1]
    assert mail.subject.startswith("URGENT")
    assert mail.message["Importance"] == "high"
    assert mail.message["Priority"] == "urgent"
    assert "en mode urgence" in mail.text
    assert_no_medical_content(mail.text, dossier, ins, "810000000042", "bris")
    assert sms_messages(env.sms_path, phone)[0]["text"].startswith("DMP URGENT :")
    listed = await list_for(env, ins)
    assert {n.channel for n in listed.notifications[:2]} == {K.CHANNEL_EMAIL, K.CHANNEL_SMS}


async def test_dossier_lifecycle_and_minor_representatives(notify_events: EventsEnv) -> None:
    env = notify_events
    child, parent, dossier = new_ins(), new_ins(), new_dossier()
    parent_mail = new_email()
    await set_prefs(env, prefs(parent, parent_mail))
    await publish(
        env.js,
        "dmp.records.dossier.created",
        dossier_created(dossier, child, minor=True, representatives=(parent,)),
    )
    await eventually(lambda: len(env.smtp.messages_to(parent_mail)) == 1, what="creation")
    created = env.smtp.messages_to(parent_mail)[0]
    assert created.subject == "Un DMP a été créé"
    assert "Le DMP d'une personne que vous représentez a été créé" in created.text
    # A document is not announced to representatives (it may be hidden from them).
    await publish(env.js, "dmp.records.document.added", document(dossier))
    closed = dossier_state(dossier, child, records_pb2.DOSSIER_STATE_CLOSED)
    await publish(env.js, "dmp.records.dossier.closed", closed)
    await eventually(lambda: len(env.smtp.messages_to(parent_mail)) == 2, what="closure")
    assert "a été fermé" in env.smtp.messages_to(parent_mail)[1].text
    reactivated = dossier_state(dossier, child, records_pb2.DOSSIER_STATE_ACTIVE)
    await publish(env.js, "dmp.records.dossier.reactivated", reactivated)
    await eventually(lambda: len(env.smtp.messages_to(parent_mail)) == 3, what="reactivation")
    texts = [m.text for m in env.smtp.messages_to(parent_mail)]
    assert "a été réactivé" in texts[2]
    for text in texts:
        assert_no_medical_content(text, child, parent, dossier)


async def test_hidden_document_waits_for_its_release(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email = await patient_with_dossier(env)
    hidden = document(dossier, hidden=True)
    await publish(env.js, "dmp.records.document.added", hidden)
    # A visible document published after it arrives alone.
    visible = await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="visible document")
    await handled(env, "dmp.records.document.added", visible)
    await settled(env, ins)
    assert len(env.smtp.messages_to(email)) == 2
    release = document(dossier, document_id=hidden.document.rsplit("/", 1)[1], hidden=False)
    await publish(env.js, "dmp.records.document.visibility_changed", release)
    await eventually(lambda: len(env.smtp.messages_to(email)) == 3, what="released document")
    # The release again (redelivered, or hidden then released once more): nothing new.
    await publish(env.js, "dmp.records.document.visibility_changed", release)
    again = await publish(
        env.js, "dmp.records.document.visibility_changed", release, msg_id=new_id()
    )
    await handled(env, "dmp.records.document.visibility_changed", again)
    await settled(env, ins)
    assert len(env.smtp.messages_to(email)) == 3


async def test_event_of_a_dossier_not_yet_known_is_retried(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email = new_ins(), new_dossier(), new_email()
    await set_prefs(env, prefs(ins, email, choices={K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE: []}))
    retried = retries(env, "dmp.records.document.added")
    early = await publish(env.js, "dmp.records.document.added", document(dossier))
    # Consumed and NAKed at least once (a retry counted), and still not acknowledged.
    await until(
        lambda: retries(env, "dmp.records.document.added") > retried, "the document retried"
    )
    info = await consumer_of(env, "dmp.records.document.added").info()
    assert info is not None
    assert int(info.ack_floor.stream_seq or 0) < early.seq
    assert env.smtp.messages_to(email) == []
    await publish(env.js, "dmp.records.dossier.created", dossier_created(dossier, ins))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 1, what="late document")
    assert env.smtp.messages_to(email)[0].subject.startswith("Un nouveau document")


async def test_same_event_twice_and_a_full_redelivery_send_once(
    notify_events: EventsEnv, databases: DatabaseFactory
) -> None:
    env = notify_events
    ins, dossier, email = await patient_with_dossier(env)
    event = document(dossier)
    # Same event id in the payload, two different Nats-Msg-Id: JetStream keeps both.
    await publish(env.js, "dmp.records.document.added", event, msg_id=new_id())
    await publish(env.js, "dmp.records.document.added", event, msg_id=new_id())
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="document e-mail")
    # A second notify on the same database with new durable consumers: every
    # event of the streams is delivered again.
    app = env.app
    again = NotifyApp(
        events_settings(
            app.notify_settings.database_url,
            app.notify_settings.nats_url,
            env.smtp,
            env.sms_path,
        )
    )
    running = await start_app(again)
    try:
        await again.wait_events_ready()

        async def drained() -> bool:
            for consumer in again.consumers:
                info = await consumer._sub.consumer_info()  # type: ignore[union-attr]
                if info.num_pending or info.num_ack_pending:
                    return False
            return True

        await until(drained, "every event delivered again and handled", within_s=15)
        # Nothing the redelivery might have queued is left to send.
        await settled(env, ins)
    finally:
        await running.stop(0.5)
    assert len(env.smtp.messages_to(email)) == 2
    async with app.db() as session:
        rows = (
            await session.execute(
                select(models.notifications).where(
                    models.notifications.c.event_id == event.header.event_id
                )
            )
        ).all()
    assert len(rows) == 1


async def test_smtp_down_for_a_while_then_delivered(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email = await patient_with_dossier(env)
    env.smtp.stop()
    try:
        await publish(env.js, "dmp.records.document.added", document(dossier))

        async def failed_once() -> bool:
            newest = (await list_for(env, ins)).notifications[0]
            return (
                newest.kind == K.NOTIFICATION_KIND_DOCUMENT_ADDED
                and newest.status == K.DELIVERY_STATUS_PENDING
                and newest.attempts >= 1
            )

        await until(failed_once, "a send failed while SMTP is down")
    finally:
        env.smtp.start()
    await eventually(lambda: len(env.smtp.messages_to(email)) == 2, what="late e-mail")
    newest = await newest_with_status(env, ins, K.DELIVERY_STATUS_SENT)
    assert newest.attempts >= 2


async def test_list_notifications_pages_newest_first_own_only(notify_events: EventsEnv) -> None:
    env = notify_events
    ins, dossier, email = await patient_with_dossier(env)
    for _ in range(4):
        await publish(env.js, "dmp.records.document.added", document(dossier))
    await eventually(lambda: len(env.smtp.messages_to(email)) == 5, what="5 e-mails")
    first = await list_for(env, ins, page_size=2)
    assert len(first.notifications) == 2
    assert first.next_page_token
    second = await list_for(env, ins, page_size=2, page_token=first.next_page_token)
    third = await list_for(env, ins, page_size=2, page_token=second.next_page_token)
    assert len(third.notifications) == 1
    assert not third.next_page_token
    names = [n.name for page in (first, second, third) for n in page.notifications]
    assert len(set(names)) == 5
    times = [n.create_time.ToDatetime() for p in (first, second, third) for n in p.notifications]
    assert times == sorted(times, reverse=True)
    assert third.notifications[0].kind == K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE

    other = new_ins()
    for principal in (
        principals.patient(other),
        principals.professional("810000000042"),
        principals.internal(),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.ListNotifications(
                notify_pb2.ListNotificationsRequest(parent=f"patients/{ins}"),
                metadata=principals.metadata(principal, LIST),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "PERMISSION_DENIED"  # type: ignore[union-attr]
    # A token issued for someone else, or made up, is refused.
    other_page = await list_for(env, other)
    assert not other_page.notifications
    for token in ("garbage", "djE6MTIzOjQ"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await list_for(env, other, page_token=token)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await list_for(env, other, page_token=first.next_page_token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
