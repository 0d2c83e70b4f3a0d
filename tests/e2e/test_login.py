"""A real patient sign-up and login through the launcher-started gateway: creation code from a
CPAM desk card, account, password + one-time code read from the dev mail sink, then the token."""

from __future__ import annotations

import uuid

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import (
    R,
    S,
    bearer,
    eventually,
    expect,
    mails_to,
    one_time_code,
    records,
    rid,
)
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request

PASSWORD = "Correct-Horse-42-battery"

ID = identity_pb2


async def test_patient_signs_up_logs_in_and_creates_their_record(stack: LiveStack) -> None:
    ins = make_ins()
    email = f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk.IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    account = await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
        ),
        timeout=15,
    )
    assert account.ins == ins

    # A wrong password reveals nothing and sends no code.
    await expect(
        anonymous.StartLogin(
            ID.StartLoginRequest(request_id=rid(), identifier=ins, password="wrong-" + PASSWORD),
            timeout=15,
        ),
        S.UNAUTHENTICATED,
    )
    before = len(mails_to(stack.mail_dir, email))
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=PASSWORD), timeout=15
    )
    assert started.channel == ID.DELIVERY_CHANNEL_EMAIL
    assert email not in started.masked_destination
    code = await one_time_code(stack.mail_dir, email, before)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    token = verified.tokens.access_token
    # The code is single use.
    await expect(
        anonymous.VerifyOneTimeCode(
            ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
            timeout=10,
        ),
        S.FAILED_PRECONDITION,
        "OTP_ALREADY_USED",
    )

    # The token identifies the patient at the gateway: they create and read their own record.
    patient = records(stack.patient_channel())
    md = bearer(token)
    created = await patient.CreateDossier(
        create_request(ins, channel="online", request_id=rid()), metadata=md, timeout=15
    )
    got = await eventually(
        lambda: patient.GetDossier(R.GetDossierRequest(name=created.name), metadata=md, timeout=10)
    )
    assert got.patient_ins == ins
    # Another patient's record stays invisible to this token.
    await expect(
        patient.CreateDossier(create_request(make_ins(), channel="online"), metadata=md),
        S.PERMISSION_DENIED,
    )
