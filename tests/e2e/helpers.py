"""Requests, polling and assertions for tests through the launcher-started gateway.

Everything goes through the gateway's public ports, with real certificates or
patient tokens. Where the platform is eventually consistent (consent learns
records' state changes from JetStream), tests poll a public RPC instead of
peeking into a service.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.fixtures.records import make_ins
from tests.fixtures.stack import EXTRA_CARDS
from tests.records.helpers import create_request, doc

R = records_pb2
C = consent_pb2
S = grpc.StatusCode
T = TypeVar("T")
WAIT_S = 20.0
_CODE = re.compile(r"\b(\d{6})\b")


#: The password the journeys' patients sign up with.
PASSWORD = "Correct-Horse-42-battery"


def rid() -> str:
    return str(uuid.uuid4())


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def rpps(card: str) -> str:
    fields = pki.DEMO_CARDS.get(card) or EXTRA_CARDS[card]
    return fields.rpps


def records(channel: grpc.aio.Channel) -> records_pb2_grpc.RecordsServiceStub:
    return records_pb2_grpc.RecordsServiceStub(channel)


def consent(channel: grpc.aio.Channel) -> consent_pb2_grpc.ConsentServiceStub:
    return consent_pb2_grpc.ConsentServiceStub(channel)


def patient_md(stack: LiveStack, ins: str) -> tuple[tuple[str, str], ...]:
    return bearer(stack.token(ins))


async def expect(coro: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro
    err = caught.value
    assert err.code() == code, (err.code(), err.details())
    if reason is not None:
        info = error_info(err)
        assert info is not None
        assert info.reason == reason, info
    return err


async def eventually(
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[grpc.StatusCode, ...] = (S.NOT_FOUND,),
    within_s: float = WAIT_S,
) -> T:
    """`call()` until it stops failing with `retry_on` (a change still propagating)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            if err.code() not in retry_on or loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


async def until_refused(
    call: Callable[[], Awaitable[Any]], code: grpc.StatusCode, *, within_s: float = WAIT_S
) -> grpc.aio.AioRpcError:
    """`call()` until it fails with `code` (a refusal still propagating); that error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            await call()
        except grpc.aio.AioRpcError as err:
            if err.code() == code:
                return err
            if loop.time() > deadline:
                raise
        if loop.time() > deadline:
            raise AssertionError(f"still allowed after {within_s}s, expected {code}")
        await asyncio.sleep(0.05)


async def wait_known(stack: LiveStack, dossier: str, ins: str) -> R.Dossier:
    """Until consent has projected the record: the patient reads it through the gateway."""
    stub = records(stack.patient_channel())
    md = patient_md(stack, ins)
    result: R.Dossier = await eventually(
        lambda: stub.GetDossier(R.GetDossierRequest(name=dossier), metadata=md, timeout=10)
    )
    return result


async def new_record(
    stack: LiveStack, ins: str | None = None, request: R.CreateDossierRequest | None = None
) -> tuple[str, str]:
    """An active record created at a CPAM desk through the gateway; (name, ins)."""
    ins = ins or make_ins()
    desk = records(stack.card_channel("desk"))
    dossier = await desk.CreateDossier(request or create_request(ins), timeout=15)
    await wait_known(stack, dossier.name, ins)
    return dossier.name, ins


async def grant(stack: LiveStack, dossier: str, ins: str, card: str) -> C.AccessRule:
    stub = consent(stack.patient_channel())
    rule: C.AccessRule = await stub.GrantAccess(
        C.GrantAccessRequest(parent=dossier, professional_rpps=rpps(card), request_id=rid()),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    return rule


async def upload(stack: LiveStack, card: str, dossier: str, **kw: Any) -> R.Document:
    stub = records(stack.card_channel(card))
    request = R.CreateDocumentRequest(parent=dossier, document=doc(**kw), request_id=rid())
    result: R.Document = await stub.CreateDocument(request, timeout=15)
    return result


async def listed(stack: LiveStack, card: str, dossier: str) -> list[str]:
    stub = records(stack.card_channel(card))
    reply = await stub.ListDocuments(R.ListDocumentsRequest(parent=dossier), timeout=10)
    return [d.name for d in reply.documents]


def mails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    """E-mails the dev sink received for `address`, oldest first."""
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if isinstance(message, EmailMessage) and address in str(message.get("To", "")):
            found.append(message)
    return found


async def one_time_code(mail_dir: Path, address: str, seen: int = 0) -> str:
    """The code of the first e-mail to `address` after the `seen` earlier ones."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        for message in mails_to(mail_dir, address)[seen:]:
            body = message.get_body(preferencelist=("plain", "html"))
            match = _CODE.search(str(body.get_content()) if body is not None else "")
            if match:
                return match.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no one-time code for {address} in {mail_dir}")


async def register_patient(stack: LiveStack, ins: str, email: str, mobile_phone: str = "") -> None:
    """A real sign-up: a creation code from the CPAM desk, then the patient's own account
    (with the contacts notify will use by default) through the gateway's patient port."""
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk.IssueCreationCode(
        identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await anonymous.RegisterPatientAccount(
        identity_pb2.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
            mobile_phone=mobile_phone,
        ),
        timeout=15,
    )
