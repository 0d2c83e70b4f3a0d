"""Requests and assertions shared by the gateway tests."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import records_pb2
from kit.errors import error_info
from tests.fixtures.records import make_ins
from tests.gateway.conftest import Platform, bearer
from tests.records.helpers import create_request, doc

R = records_pb2
C = consent_pb2


def rid() -> str:
    return str(uuid.uuid4())


async def expect(coro: Any, code: grpc.StatusCode, reason: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro
    err = caught.value
    assert err.code() == code, (err.code(), err.details())
    if reason is not None:
        info = error_info(err)
        assert info is not None
        assert info.reason == reason, info
    return err


async def new_record(platform: Platform) -> tuple[str, str]:
    """An active record created at a CPAM desk through the gateway; (name, ins)."""
    ins = make_ins()
    desk = platform.records(platform.card_channel("desk"))
    dossier = await desk.CreateDossier(create_request(ins), timeout=15)
    await platform.consent.wait_state(dossier.name, records_pb2.DOSSIER_STATE_ACTIVE)
    return dossier.name, ins


def patient_md(platform: Platform, ins: str) -> Any:
    return bearer(platform.token(ins))


async def grant(platform: Platform, dossier: str, ins: str, card: str) -> None:
    stub = platform.consent_stub(platform.patient_channel())
    await stub.GrantAccess(
        C.GrantAccessRequest(
            parent=dossier,
            professional_rpps=platform.cards[card].fields.rpps,
            request_id=rid(),
        ),
        metadata=patient_md(platform, ins),
        timeout=10,
    )


async def upload(platform: Platform, card: str, dossier: str, **kw: Any) -> R.Document:
    stub = platform.records(platform.card_channel(card))
    request = R.CreateDocumentRequest(parent=dossier, document=doc(**kw), request_id=rid())
    result: R.Document = await stub.CreateDocument(request, timeout=15)
    return result
