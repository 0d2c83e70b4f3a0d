"""Credentials on paper: the activation letter (PDF text read back with pypdf), its code
valid for weeks on identity's injected clock, and DMP Info Service's reissue (identity
check recorded, rate limits, postal letter or new contact, re-activation of the account)."""

from __future__ import annotations

import io
import re
from datetime import UTC, timedelta

import grpc
import pytest
from pypdf import PdfReader
from sqlalchemy import select

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing import principals
from kit import codes
from kit.clock import ManualClock
from kit.errors import error_info
from services.identity import models
from tests.fixtures.notify import NotifySinks
from tests.identity.helpers import (
    PASSWORD,
    Rows,
    desk,
    login,
    md,
    new_phone,
    random_ins,
    register_patient,
    rid,
)

ID = identity_pb2
CODE = re.compile(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b")
CHECKS = [
    ID.IDENTITY_CHECK_ITEM_NAMES,
    ID.IDENTITY_CHECK_ITEM_BIRTH_DATE,
    ID.IDENTITY_CHECK_ITEM_VITALE_CARD,
]
NEW_PASSWORD = "Another-Horse-77-staple"


def failure(exc: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    info = error_info(exc.value)
    assert info is not None
    return exc.value.code(), info.reason


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def code_in(text: str) -> str:
    found = CODE.findall(text)
    assert len(found) == 1, found
    return found[0]


def spaced(ins: str) -> str:
    return " ".join((ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:]))


def medical_words() -> set[str]:
    """Labels of every document class and type: none may be on a letter."""
    words = set()
    for table in ("document_classes", "document_types"):
        for label in codes.table(table).values():
            words.add(label.label.lower())
    return {w for w in words if len(w) > 6}


def agent(name: str = "agent-info-1") -> object:
    return principals.staff(name, ("info_service",))


async def letter(stub, ins: str, principal=None) -> ID.ActivationLetter:  # type: ignore[no-untyped-def]
    return await stub.IssueActivationLetter(
        ID.IssueActivationLetterRequest(request_id=rid(), ins=ins),
        metadata=md(principal or desk(), "IssueActivationLetter"),
    )


def reissue_request(ins: str, **delivery: object) -> ID.ReissueActivationRequest:
    request = ID.ReissueActivationRequest(
        request_id=rid(),
        ins=ins,
        identity_check=ID.IdentityCheck(checked=CHECKS, call_reference="DIS-2026-000123"),
    )
    if "new_contact" in delivery:
        request.new_contact.CopyFrom(delivery["new_contact"])  # type: ignore[arg-type]
    else:
        request.postal_letter.SetInParent()
    return request


async def reissue(stub, request: ID.ReissueActivationRequest, principal=None):  # type: ignore[no-untyped-def]
    return await stub.ReissueActivation(
        request, metadata=md(principal or agent(), "ReissueActivation")
    )


async def test_the_letter_holds_identifier_code_where_and_opposition_and_nothing_medical(
    stub, clock: ManualClock
) -> None:
    ins = random_ins()
    doctor = principals.professional("10000000025", "21")
    issued = await letter(stub, ins, doctor)
    assert issued.media_type == "application/pdf"
    assert issued.pdf.startswith(b"%PDF-")
    assert ins not in issued.file_name
    # Six weeks by default: a letter has time to be handed over or posted.
    assert issued.expire_time.ToDatetime(UTC) - clock.now() == timedelta(weeks=6)
    reader = PdfReader(io.BytesIO(issued.pdf))
    fonts = {
        str(font["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert fonts
    assert all("DejaVuSans" in f for f in fonts), fonts  # the shipped font, embedded
    text = pdf_text(issued.pdf)
    assert spaced(ins) in text
    code_in(text)
    assert "https://www.dmp.fr" in text
    assert "vous opposer à ces accès en" in text.replace("\n", " ")
    lowered = text.lower()
    assert not [w for w in medical_words() if w in lowered]


async def test_the_letter_code_works_30_days_later_and_dies_after_6_weeks(
    stub, rows: Rows, clock: ManualClock
) -> None:
    ins, late_ins = random_ins(), random_ins()
    code = code_in(pdf_text((await letter(stub, ins)).pdf))
    late = code_in(pdf_text((await letter(stub, late_ins)).pdf))
    clock.advance(timedelta(days=30))
    account = await stub.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(), ins=ins, creation_code=code, password=PASSWORD, email="a@exemple.fr"
        )
    )
    assert account.ins == ins
    clock.advance(timedelta(days=12, seconds=1))
    before = await rows.counts()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterPatientAccount(
            ID.RegisterPatientAccountRequest(
                request_id=rid(),
                ins=late_ins,
                creation_code=late,
                password=PASSWORD,
                email="b@exemple.fr",
            )
        )
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "CREATION_CODE_EXPIRED")
    assert await rows.counts() == before


async def test_the_letter_is_returned_once(stub) -> None:
    request = ID.IssueActivationLetterRequest(request_id=rid(), ins=random_ins())
    await stub.IssueActivationLetter(request, metadata=md(desk(), "IssueActivationLetter"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.IssueActivationLetter(request, metadata=md(desk(), "IssueActivationLetter"))
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ALREADY_PROCESSED")


@pytest.mark.parametrize(
    ("principal", "reason"),
    [
        (principals.staff("clerk", ("administratif",)), "ROLE_REQUIRED"),
        (principals.staff("info", ("info_service",)), "ROLE_REQUIRED"),
        (principals.professional("10000000009", "21"), None),
        (
            principals.professional("10000000017", "10", roles=("medecin_du_travail",)),
            "ROLE_EXCLUDED",
        ),
    ],
)
async def test_who_may_issue_a_letter(stub, principal, reason) -> None:  # type: ignore[no-untyped-def]
    if reason is None:
        assert (await letter(stub, random_ins(), principal)).pdf
        return
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await letter(stub, random_ins(), principal)
    assert failure(exc) == (grpc.StatusCode.PERMISSION_DENIED, reason)


async def test_support_reissue_by_post_reactivates_the_account(
    stub, rows: Rows, notify_sinks: NotifySinks
) -> None:
    patient = await register_patient(stub)
    old = await login(stub, notify_sinks, patient)
    answer = await reissue(stub, reissue_request(patient.ins))
    assert answer.reissue.startswith(patient.account + "/reissues/")
    text = pdf_text(answer.letter.pdf)
    assert spaced(patient.ins) in text
    assert "DMP Info Service" in text
    code = code_in(text)
    stored = await rows.scalar(
        select(models.support_reissues.c.checked).where(
            models.support_reissues.c.ins == patient.ins
        )
    )
    assert stored == (
        "IDENTITY_CHECK_ITEM_NAMES,IDENTITY_CHECK_ITEM_BIRTH_DATE,IDENTITY_CHECK_ITEM_VITALE_CARD"
    )
    # The old password still works until the code is used: a deceitful call changes nothing
    # before the real patient hears of it.
    await login(stub, notify_sinks, patient)
    phone = new_phone()
    account = await stub.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=patient.ins,
            creation_code=code,
            password=NEW_PASSWORD,
            mobile_phone=phone,
        )
    )
    assert account.name == patient.account
    assert account.masked_email == ""  # the lost mailbox is forgotten
    with pytest.raises(grpc.aio.AioRpcError) as exc:  # every old session ended
        await stub.RefreshToken(
            ID.RefreshTokenRequest(request_id=rid(), refresh_token=old.refresh_token)
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    patient.password, patient.phone, patient.email = NEW_PASSWORD, phone, ""
    await login(stub, notify_sinks, patient)


async def test_support_reissue_to_a_new_contact(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    email = f"nouvelle.{rid()[:8]}@exemple.fr"
    answer = await reissue(
        stub, reissue_request(patient.ins, new_contact=ID.NewContact(email=email))
    )
    assert not answer.HasField("letter")
    assert email not in answer.masked_destination
    mails = notify_sinks.smtp.messages_to(email)
    assert len(mails) == 1
    code = code_in(mails[0].text)
    account = await stub.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=patient.ins,
            creation_code=code,
            password=NEW_PASSWORD,
            email=email,
        )
    )
    assert account.name == patient.account


async def test_support_reissue_refusals_write_nothing(stub, rows: Rows) -> None:
    patient = await register_patient(stub)
    before = await rows.counts()
    cases: list[tuple[ID.ReissueActivationRequest, object, grpc.StatusCode, str]] = []
    weak = reissue_request(patient.ins)
    del weak.identity_check.checked[2]
    cases.append((weak, agent(), grpc.StatusCode.INVALID_ARGUMENT, "IDENTITY_CHECK_INSUFFICIENT"))
    none = reissue_request(patient.ins)
    none.ClearField("identity_check")
    cases.append((none, agent(), grpc.StatusCode.INVALID_ARGUMENT, "IDENTITY_CHECK_REQUIRED"))
    free_text = reissue_request(patient.ins)
    free_text.identity_check.call_reference = "patient diabétique, appel du 3/12"
    cases.append((free_text, agent(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CALL_REFERENCE"))
    no_delivery = reissue_request(patient.ins)
    no_delivery.ClearField("postal_letter")
    cases.append((no_delivery, agent(), grpc.StatusCode.INVALID_ARGUMENT, "FIELD_REQUIRED"))
    bad_mail = reissue_request(patient.ins, new_contact=ID.NewContact(email="pas-une-adresse"))
    cases.append((bad_mail, agent(), grpc.StatusCode.INVALID_ARGUMENT, "EMAIL_INVALID"))
    cases.append(
        (reissue_request(random_ins()), agent(), grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    )
    cases.append(
        (reissue_request(patient.ins), desk(), grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    )
    doctor = principals.professional("10000000017", "10", "SM53")
    cases.append(
        (
            reissue_request(patient.ins),
            doctor,
            grpc.StatusCode.PERMISSION_DENIED,
            "PRINCIPAL_KIND_NOT_ALLOWED",
        )
    )
    for request, principal, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await reissue(stub, request, principal)
        assert failure(exc) == (code, reason), reason
    assert await rows.counts() == before


async def test_support_reissues_are_limited_per_patient_and_per_agent(
    stub, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    for _ in range(2):  # two per patient per week by default
        await reissue(stub, reissue_request(patient.ins), agent("agent-limit-a"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await reissue(stub, reissue_request(patient.ins), agent("agent-limit-b"))
    assert failure(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SUPPORT_RATE_LIMITED")
    clock.advance(timedelta(days=7, seconds=1))
    await reissue(stub, reissue_request(patient.ins), agent("agent-limit-b"))

    busy = agent("agent-limit-c")
    others = [await register_patient(stub) for _ in range(21)]
    for other in others[:20]:  # twenty per agent per day by default
        await reissue(stub, reissue_request(other.ins), busy)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await reissue(stub, reissue_request(others[20].ins), busy)
    assert failure(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SUPPORT_RATE_LIMITED")
    await reissue(stub, reissue_request(others[20].ins), agent("agent-limit-d"))
