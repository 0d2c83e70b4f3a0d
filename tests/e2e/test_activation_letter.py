"""Credentials on paper through the launcher-started gateway: a pharmacist's software gets the
patient's activation letter (a PDF whose text is read back with pypdf: the identifier and
the activation code, nothing medical), the pharmacist creates the record, and the patient
activates their access with the letter 30 days later.

Time: the platform's clock moves 30 days (then 12 more) with `LiveStack.advance_clock`, on a
stack of this module's own. The session's stack must stay within a minute of real time
(principal signatures live 60 s, and every later test of the run would inherit the jump,
with CRLs and certificates dated on real time); this one is thrown away after the module.
After the jump only the patient's port is used (anonymous sign-up and login, the patient's
token): the dev CRL the gateway checks cards against is valid for 30 days of real time.

Order: the first test's software asks for the letter in its creation flow, before the record
exists, where a professional may always ask (identity's answer says nothing about an account
and cancels no other code). The last test asks after the creation, which needs the creator
to keep an access to the record (issue 15's creator grant), honoured by consent like a grant.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import pytest
import pytest_asyncio
from pypdf import PdfReader

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack
from kit import codes
from tests.e2e.helpers import (
    WAIT_S,
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
from tests.waits import until

ID = identity_pb2
R = records_pb2
ACTIVATION = re.compile(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b")
PASSWORD = "Correct-Horse-42-battery"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_stack(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    """A platform whose clock this module moves by weeks."""
    async with running_stack(databases, tmp_path_factory.mktemp("letter") / "var") as live:
        yield live


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def spaced(ins: str) -> str:
    return " ".join((ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:]))


def medical_words() -> set[str]:
    words = set()
    for table in ("document_classes", "document_types"):
        words.update(c.label.lower() for c in codes.table(table).values() if len(c.label) > 6)
    return words


async def letter_for(stack: LiveStack, ins: str) -> ID.ActivationLetter:
    pharmacist = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("pharmacist"))
    result: ID.ActivationLetter = await pharmacist.IssueActivationLetter(
        ID.IssueActivationLetterRequest(request_id=rid(), ins=ins), timeout=15
    )
    return result


async def test_a_pharmacist_s_letter_activates_the_patient_30_days_later(
    own_stack: LiveStack,
) -> None:
    stack = own_stack
    ins, late_ins = make_ins(), make_ins()
    email = f"lettre.{rid()[:8]}@exemple.fr"
    issued_at = stack.clock.now()
    letter = await letter_for(stack, ins)
    late_letter = await letter_for(stack, late_ins)
    creation = create_request(ins, "professional")
    creation.dossier.contact.email = email
    dossier = await records(stack.card_channel("pharmacist")).CreateDossier(creation, timeout=15)
    assert dossier.creation_channel == R.CREATION_CHANNEL_PROFESSIONAL

    # The creation notice goes to the contact given at creation (no account, no preferences).
    await until(
        lambda: any("créé" in str(m["Subject"]) for m in mails_to(stack.mail_dir, email)),
        "the creation notice at the address given at creation",
        within_s=WAIT_S,
    )

    # What is on paper: the identifier and the code, no name and nothing medical.
    assert letter.media_type == "application/pdf"
    text = text_of(letter.pdf)
    assert spaced(ins) in text
    (code,) = ACTIVATION.findall(text)
    assert letter.expire_time.ToDatetime(UTC) - issued_at >= timedelta(weeks=6)
    lowered = text.lower()
    assert not [w for w in medical_words() if w in lowered]
    identity = creation.dossier.identity
    for trait in (identity.birth_family_name, *identity.birth_given_names, "1980", "17/05"):
        assert trait.lower() not in lowered, trait
    assert email not in text

    # 30 days later (the platform's clock), the patient activates with the letter.
    stack.advance_clock(timedelta(days=30))
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    account = await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(), ins=ins, creation_code=code, password=PASSWORD, email=email
        ),
        timeout=15,
    )
    assert account.create_time.ToDatetime(UTC) - issued_at >= timedelta(days=30)
    seen = len(mails_to(stack.mail_dir, email))
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=PASSWORD), timeout=15
    )
    otp = await one_time_code(stack.mail_dir, email, seen)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=otp),
        timeout=10,
    )
    patient = records(stack.patient_channel())
    # The gateway's revocation feed last synced "30 days ago" on the moved clock: it answers
    # UNAVAILABLE (retry later) until its next sync, about a second away.
    mine = await eventually(
        lambda: patient.GetDossier(
            R.GetDossierRequest(name=dossier.name),
            metadata=bearer(verified.tokens.access_token),
            timeout=10,
        ),
        retry_on=(S.UNAVAILABLE,),
    )
    assert mine.patient_ins == ins

    # A letter is valid for 6 weeks, not for ever.
    stack.advance_clock(timedelta(days=12, minutes=1))
    (late_code,) = ACTIVATION.findall(text_of(late_letter.pdf))
    await expect(
        anonymous.RegisterPatientAccount(
            ID.RegisterPatientAccountRequest(
                request_id=rid(),
                ins=late_ins,
                creation_code=late_code,
                password=PASSWORD,
                email=f"tard.{rid()[:8]}@exemple.fr",
            ),
            timeout=15,
        ),
        S.FAILED_PRECONDITION,
        "CREATION_CODE_EXPIRED",
    )


async def test_the_creator_prints_the_letter_after_the_creation(stack: LiveStack) -> None:
    """With issue 15's creator grant, the professional who created the record may print (or
    reprint) the letter afterwards; another professional may not (one answer with or without
    a record: NOT_FOUND)."""
    ins = make_ins()
    creation = create_request(ins, "professional")
    await records(stack.card_channel("pharmacist")).CreateDossier(creation, timeout=15)
    # The creator's grant comes from records' creation event: wait for it to be in force.
    letter = await eventually(lambda: letter_for(stack, ins))
    text = text_of(letter.pdf)
    assert spaced(ins) in text
    assert len(ACTIVATION.findall(text)) == 1
    nurse = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("nurse"))
    await expect(
        nurse.IssueActivationLetter(
            ID.IssueActivationLetterRequest(request_id=rid(), ins=ins), timeout=15
        ),
        S.NOT_FOUND,
    )
