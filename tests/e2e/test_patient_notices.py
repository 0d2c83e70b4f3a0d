"""The patient is told by default, through the launcher-started gateway: the e-mail given at
sign-up or at the record's creation is used with no SetContactPreferences call anywhere, and
an emergency session alerts once per channel while its reads are listed under it.

E-mails come from the dev mail sink, SMS from the dev SMS file. Before counting what did
*not* arrive, the tests wait for notify's durable consumer to have acknowledged the events in
question (read from JetStream) and for the patient's notifications to be settled (none
pending, read through the gateway)."""

from __future__ import annotations

import asyncio
import json
import uuid
from email.message import EmailMessage

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import events_pb2 as consent_events
from dmp.identity.v1 import identity_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from kit import nats as kit_nats
from tests.e2e.helpers import (
    C,
    R,
    consent,
    grant,
    mails_to,
    new_record,
    patient_md,
    records,
    register_patient,
    rid,
    upload,
)
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request
from tests.waits import until

ID = identity_pb2
N = notify_pb2
P = principal_pb2
FORBIDDEN = ("compte rendu", "consultation", "tension", "allergie", "douleur", "thoracique")


def new_email() -> str:
    return f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"


def new_phone() -> str:
    return "+3367" + str(uuid.uuid4().int)[:7]


def notify(stack: LiveStack) -> notify_pb2_grpc.NotifyServiceStub:
    return notify_pb2_grpc.NotifyServiceStub(stack.patient_channel())


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return str(body.get_content()) if body is not None else ""


def sms_to(stack: LiveStack, phone: str) -> list[dict[str, str]]:
    if not stack.sms_file.exists():
        return []
    lines = stack.sms_file.read_text(encoding="utf-8").splitlines()
    return [m for m in map(json.loads, filter(None, lines)) if m.get("to") == phone]


def assert_nothing_medical(text: str, *identifiers: str) -> None:
    lower = text.lower()
    for word in FORBIDDEN:
        assert word not in lower, word
    for ident in identifiers:
        assert ident not in text, ident


async def settled(stack: LiveStack, ins: str) -> list[N.Notification]:
    """The patient's notifications once none is pending (each sent or failed), newest first."""
    stub, md = notify(stack), patient_md(stack, ins)
    found: list[N.Notification] = []

    async def none_pending() -> bool:
        listed = await stub.ListNotifications(
            N.ListNotificationsRequest(parent=f"patients/{ins}", page_size=100),
            metadata=md,
            timeout=10,
        )
        found[:] = list(listed.notifications)
        return all(n.status != N.DELIVERY_STATUS_PENDING for n in found)

    await until(none_pending, f"notifications of {ins} settled", within_s=30)
    return found


async def notify_consumed(stack: LiveStack, stream: str, source: str, seq: int) -> None:
    """Until notify's durable consumer of `source` has handled `stream` up to `seq`."""
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()

        async def through() -> bool:
            info = await js.consumer_info(stream, f"notify-{source}")
            return int(info.ack_floor.stream_seq or 0) >= seq

        await until(through, f"notify-{source} through #{seq}", within_s=30)
    finally:
        await nc.close()


async def sign_up(stack: LiveStack, ins: str, email: str) -> None:
    """A real sign-up: creation code from the CPAM desk, account with an e-mail."""
    await register_patient(stack, ins, email)


async def contact_known(stack: LiveStack, ins: str, email: str) -> N.ContactPreferences:
    """Until notify knows the e-mail (read by the patient: GetContactPreferences only)."""
    stub, md = notify(stack), patient_md(stack, ins)
    name = f"patients/{ins}/contactPreferences"
    seen: list[N.ContactPreferences] = []

    async def known() -> bool:
        got = await stub.GetContactPreferences(
            N.GetContactPreferencesRequest(name=name), metadata=md, timeout=10
        )
        seen[:] = [got]
        return bool(got.email == email)

    await until(known, "the sign-up e-mail known to notify", within_s=30)
    return seen[0]


async def test_signed_up_patient_gets_one_email_for_a_document(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)  # at a desk, no contact given there
    email = new_email()
    await sign_up(stack, ins, email)
    prefs = await contact_known(stack, ins, email)
    assert list(prefs.choices) == []  # nobody chose anything: the defaults apply
    # A doctor who never met the record deposits a document: the patient gets exactly one
    # e-mail, the document notice (a deposit is not a consultation, so no first-access alert).
    await upload(stack, "doctor2", dossier)
    await until(lambda: len(mails_to(stack.mail_dir, email)) == 1, "document e-mail")
    listed = await settled(stack, ins)
    mails = mails_to(stack.mail_dir, email)
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Un nouveau document est disponible dans votre DMP"
    assert_nothing_medical(text_of(mails[0]), ins, dossier)
    assert [(n.kind, n.channel, n.status) for n in listed] == [
        (N.NOTIFICATION_KIND_DOCUMENT_ADDED, N.CHANNEL_EMAIL, N.DELIVERY_STATUS_SENT)
    ]

    # The same doctor's first consultation is then its own alert, once.
    await grant(stack, dossier, ins, "doctor2")
    doctor = records(stack.card_channel("doctor2"))
    for _ in range(2):
        await doctor.ListDocuments(R.ListDocumentsRequest(parent=dossier), timeout=10)
    await until(lambda: len(mails_to(stack.mail_dir, email)) == 2, "first-access e-mail")
    listed = await settled(stack, ins)
    mails = mails_to(stack.mail_dir, email)
    assert len(mails) == 2
    assert "accédé pour la première fois" in text_of(mails[1])
    kinds = [n.kind for n in listed]
    assert kinds == [N.NOTIFICATION_KIND_FIRST_ACCESS, N.NOTIFICATION_KIND_DOCUMENT_ADDED]


async def test_record_created_at_a_desk_sends_the_creation_notice(stack: LiveStack) -> None:
    ins, email, phone = make_ins(), new_email(), new_phone()
    request = create_request(ins)
    request.dossier.contact.email = email
    request.dossier.contact.mobile_phone = phone
    dossier, _ = await new_record(stack, ins, request)
    await until(lambda: len(mails_to(stack.mail_dir, email)) == 1, "creation notice")
    listed = await settled(stack, ins)
    (notice,) = mails_to(stack.mail_dir, email)
    assert notice["Subject"] == "Votre DMP a été créé"
    assert_nothing_medical(text_of(notice), ins, dossier)
    assert [(n.kind, n.channel) for n in listed] == [
        (N.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, N.CHANNEL_EMAIL)
    ]
    assert sms_to(stack, phone) == []  # one channel by default, e-mail first
    # What the desk was given is what notify uses, without any call to SetContactPreferences.
    got = await notify(stack).GetContactPreferences(
        N.GetContactPreferencesRequest(name=f"patients/{ins}/contactPreferences"),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    assert (got.email, got.mobile_phone) == (email, phone)


async def test_centre_15_session_alerts_once_per_channel_and_lists_its_reads(
    stack: LiveStack,
) -> None:
    ins, email, phone = make_ins(), new_email(), new_phone()
    request = create_request(ins)
    request.dossier.contact.email = email
    request.dossier.contact.mobile_phone = phone
    dossier, _ = await new_record(stack, ins, request)
    documents = [(await upload(stack, "doctor2", dossier)).name for _ in range(4)]
    await until(lambda: len(mails_to(stack.mail_dir, email)) >= 5, "creation + upload e-mails")

    # Every access event of this record from now on, as notify will consume them.
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        stream = kit_nats.STREAMS["consent"].name
        watch = await js.pull_subscribe(
            "dmp.consent.access.recorded",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        regulateur = consent(stack.card_channel("regulateur"))
        rule = await regulateur.StartEmergencyAccess(
            C.StartEmergencyAccessRequest(
                parent=dossier,
                mode=P.ACCESS_MODE_CENTRE_15,
                reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
                justification="Appel au 15 pour douleur thoracique",
                request_id=rid(),
            ),
            timeout=10,
        )
        reader = records(stack.card_channel("regulateur"))
        for name in documents:
            await reader.GetDocument(R.GetDocumentRequest(name=name), timeout=10)

        # The access history lists the opening and the four reads under this emergency.
        history = await consent(stack.patient_channel()).ListAccessHistory(
            C.ListAccessHistoryRequest(
                parent=dossier, filter=f'emergency_access_rule = "{rule.name}"', page_size=50
            ),
            metadata=patient_md(stack, ins),
            timeout=10,
        )
        entries = list(history.entries)
        assert {e.emergency_access_rule for e in entries} == {rule.name}
        assert all(e.mode == P.ACCESS_MODE_CENTRE_15 for e in entries)
        reads = [e for e in entries if e.action == authz_pb2.ACTION_READ]
        assert sorted(e.resource for e in reads) == sorted(documents)
        assert [e.action for e in entries].count(authz_pb2.ACTION_EMERGENCY_ACCESS) == 1

        # Their events, all naming the session; then notify has handled the last one.
        mine: list[tuple[int, consent_events.AccessRecorded]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(mine) < len(entries):
            assert loop.time() < deadline, f"{len(mine)} access events of {len(entries)}"
            try:
                batch = await watch.fetch(10, timeout=1)
            except TimeoutError:
                continue
            for msg in batch:
                await msg.ack()
                event = consent_events.AccessRecorded.FromString(msg.data)
                if event.dossier == dossier:
                    mine.append((msg.metadata.sequence.stream, event))
        assert {e.emergency_access_rule for _, e in mine} == {rule.name}
        assert all(e.emergency for _, e in mine)
        await watch.unsubscribe()
    finally:
        await nc.close()
    await notify_consumed(stack, stream, "consent-access", max(seq for seq, _ in mine))
    listed = await settled(stack, ins)

    urgent = [m for m in mails_to(stack.mail_dir, email) if m["Subject"].startswith("URGENT")]
    assert len(urgent) == 1
    assert_nothing_medical(text_of(urgent[0]), ins, dossier, "régul", "Centre 15", "SAMU")
    texts = [m["text"] for m in sms_to(stack, phone)]
    assert len(texts) == 1
    assert texts[0].startswith("DMP URGENT :")
    emergency = [n for n in listed if n.kind == N.NOTIFICATION_KIND_EMERGENCY_ACCESS]
    assert sorted(n.channel for n in emergency) == [N.CHANNEL_EMAIL, N.CHANNEL_SMS]
