"""DMP Info Service through the launcher-started gateway (real cards and tokens, the dev mail
and SMS sinks): a patient who lost their phone and mailbox gets access back from a support
agent ("support" demo card, staff role info_service). The call is in the record's access
history the patient reads, and the patient is told on every channel notify knows; the agent
never reads the record."""

from __future__ import annotations

import io
import json
import re
import uuid

from pypdf import PdfReader

from dmp.consent.v1 import consent_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import (
    PASSWORD,
    WAIT_S,
    S,
    bearer,
    consent,
    expect,
    mails_to,
    new_record,
    one_time_code,
    patient_md,
    records,
    register_patient,
    rid,
)
from tests.waits import until

ID = identity_pb2
N = notify_pb2
ACTIVATION = re.compile(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b")
NEW_PASSWORD = "Another-Horse-77-staple"
CHECK = ID.IdentityCheck(
    checked=[
        ID.IDENTITY_CHECK_ITEM_NAMES,
        ID.IDENTITY_CHECK_ITEM_BIRTH_DATE,
        ID.IDENTITY_CHECK_ITEM_POSTAL_ADDRESS,
    ],
    call_reference="DIS-2026-12-000042",
)


def sms_to(stack: LiveStack, phone: str) -> list[str]:
    if not stack.sms_file.exists():
        return []
    lines = stack.sms_file.read_text("utf-8").splitlines()
    return [m["text"] for m in map(json.loads, filter(None, lines)) if m["to"] == phone]


def new_phone() -> str:
    return "+3361" + str(uuid.uuid4().int)[:7]


def new_email(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@exemple.fr"


async def signed_up_patient(stack: LiveStack) -> tuple[str, str, str, str]:
    """A record created at a desk and an account with a phone and an e-mail (notify learns
    both from the sign-up: no SetContactPreferences); (dossier, ins, email, phone)."""
    dossier, ins = await new_record(stack)
    email, phone = new_email("perdu"), new_phone()
    await register_patient(stack, ins, email, phone)
    # notify learns them from identity's events: both are known before anything happens.
    notify = notify_pb2_grpc.NotifyServiceStub(stack.patient_channel())

    async def known() -> bool:
        got = await notify.GetContactPreferences(
            N.GetContactPreferencesRequest(name=f"patients/{ins}/contactPreferences"),
            metadata=patient_md(stack, ins),
            timeout=10,
        )
        return (got.email, got.mobile_phone) == (email, phone)

    await until(known, "the sign-up contacts known to notify", within_s=30)
    return dossier, ins, email, phone


async def test_a_patient_who_lost_phone_and_mailbox_gets_access_back(stack: LiveStack) -> None:
    dossier, ins, old_email, old_phone = await signed_up_patient(stack)
    support = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("support"))
    new_email_address = new_email("retrouve")
    answer = await support.ReissueActivation(
        ID.ReissueActivationRequest(
            request_id=rid(),
            ins=ins,
            identity_check=CHECK,
            new_contact=ID.NewContact(email=new_email_address),
        ),
        timeout=15,
    )
    assert new_email_address not in answer.masked_destination
    assert not answer.HasField("letter")

    # The code reaches the new mailbox; the patient re-activates and logs in with it.
    await until(
        lambda: bool(mails_to(stack.mail_dir, new_email_address)),
        "the activation code at the new address",
        within_s=WAIT_S,
    )
    mail = mails_to(stack.mail_dir, new_email_address)
    body = mail[0].get_body(preferencelist=("plain",))
    assert body is not None
    code = ACTIVATION.findall(str(body.get_content()))[0]
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=code,
            password=NEW_PASSWORD,
            email=new_email_address,
        ),
        timeout=15,
    )
    seen = len(mails_to(stack.mail_dir, new_email_address))
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=NEW_PASSWORD), timeout=15
    )
    assert started.channel == ID.DELIVERY_CHANNEL_EMAIL
    otp = await one_time_code(stack.mail_dir, new_email_address, seen)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=otp),
        timeout=10,
    )
    token = verified.tokens.access_token
    # The old password is gone.
    await expect(
        anonymous.StartLogin(
            ID.StartLoginRequest(request_id=rid(), identifier=ins, password=PASSWORD), timeout=15
        ),
        S.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )

    # The access history the patient reads names the support agent's call.
    history = await consent(stack.patient_channel()).ListAccessHistory(
        consent_pb2.ListAccessHistoryRequest(parent=dossier), metadata=bearer(token), timeout=10
    )
    reissues = [e for e in history.entries if e.method.endswith("/ReissueActivation")]
    assert len(reissues) == 1, history.entries
    assert reissues[0].decision == consent_pb2.DECISION_ALLOWED
    assert list(reissues[0].principal.roles) == ["info_service"]
    assert "DMP Info Service" in reissues[0].principal.subject

    # Told on every channel notify knows: the old mailbox and the old phone (which a thief
    # who called the desk would not hold), no code, no medical content.
    def told() -> list[str]:
        texts = sms_to(stack, old_phone)
        for message in mails_to(stack.mail_dir, old_email):
            if "DMP Info Service" in str(message["Subject"]):
                part = message.get_body(preferencelist=("plain",))
                texts.append(str(part.get_content()) if part is not None else "")
        return [t for t in texts if "DMP Info Service" in t]

    await until(lambda: len(told()) >= 2, "the alert by e-mail and SMS", within_s=WAIT_S)
    alerts = told()
    assert len(alerts) == 2, alerts
    for text in alerts:
        assert code not in text
        assert not ACTIVATION.search(text)
    listed = await notify_pb2_grpc.NotifyServiceStub(stack.patient_channel()).ListNotifications(
        N.ListNotificationsRequest(parent=f"patients/{ins}"),
        metadata=bearer(token),
        timeout=10,
    )
    kinds = sorted(
        N.Channel.Name(n.channel)
        for n in listed.notifications
        if n.kind == N.NOTIFICATION_KIND_ACTIVATION_REISSUED
    )
    assert kinds == ["CHANNEL_EMAIL", "CHANNEL_SMS"]

    # The agent never reads the record.
    reader = records(stack.card_channel("support"))
    for call in (
        reader.GetDossier(records_pb2.GetDossierRequest(name=dossier), timeout=10),
        reader.ListDocuments(records_pb2.ListDocumentsRequest(parent=dossier), timeout=10),
        reader.GetHealthProfile(
            records_pb2.GetHealthProfileRequest(name=f"{dossier}/healthProfile"), timeout=10
        ),
    ):
        await expect(call, S.PERMISSION_DENIED)


async def test_the_support_desk_posts_a_letter(stack: LiveStack) -> None:
    _, ins, _, _ = await signed_up_patient(stack)
    support = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("support"))
    answer = await support.ReissueActivation(
        ID.ReissueActivationRequest(
            request_id=rid(), ins=ins, identity_check=CHECK, postal_letter=ID.PostalLetter()
        ),
        timeout=15,
    )
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(answer.letter.pdf)).pages)
    assert " ".join((ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:])) in text
    (code,) = ACTIVATION.findall(text)
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    account = await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=code,
            password=NEW_PASSWORD,
            mobile_phone=new_phone(),
        ),
        timeout=15,
    )
    assert account.ins == ins
    # A desk agent is not the support desk.
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    await expect(
        desk.ReissueActivation(
            ID.ReissueActivationRequest(
                request_id=rid(), ins=ins, identity_check=CHECK, postal_letter=ID.PostalLetter()
            ),
            timeout=10,
        ),
        S.PERMISSION_DENIED,
    )
