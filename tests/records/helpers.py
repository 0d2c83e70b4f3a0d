"""Request builders and assertions shared by the records tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from dmp.records.v1 import records_pb2
from kit.errors import error_info
from tests.fixtures.records import RecordsCalls, desk, make_ins, patient, professional

R = records_pb2
DATA = Path(__file__).parent / "data"
PDF = b"%PDF-1.4\n% test\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def rid() -> str:
    return str(uuid.uuid4())


def identity(born: tuple[int, int, int] = (1980, 5, 17)) -> R.PatientIdentity:
    return R.PatientIdentity(
        birth_family_name="DURAND",
        birth_given_names=["Marie", "Louise"],
        birth_date=R.Date(year=born[0], month=born[1], day=born[2]),
        sex=R.SEX_FEMALE,
        birth_place_code="75056",
    )


def create_request(ins: str, channel: str = "desk", **kw: Any) -> R.CreateDossierRequest:
    dossier = R.Dossier(patient_ins=ins, identity=kw.pop("identity", identity()))
    for rep in kw.pop("reps", []):
        dossier.legal_representatives.append(rep)
    req = R.CreateDossierRequest(dossier=dossier, request_id=kw.pop("request_id", rid()))
    attest = R.ConsentAttestation(consent_obtained=True, information_given=True)
    if channel == "desk":
        req.desk.CopyFrom(R.DeskCreation(consent=attest, cpam_office_code="751"))
    elif channel == "professional":
        req.professional.CopyFrom(R.ProfessionalCreation(consent=attest))
    elif channel == "online":
        req.online.CopyFrom(R.OnlineCreation(creation_code="ABCD-1234"))
    return req


async def new_dossier(records: RecordsCalls, ins: str | None = None) -> tuple[str, str]:
    """A fresh ACTIVE record created at a desk; returns (name, ins)."""
    ins = ins or make_ins()
    dossier = await records.call("CreateDossier", create_request(ins), desk())
    return dossier.name, ins


def doc(
    title: str = "Compte rendu de consultation",
    type_code: str = "11488-4",
    content: bytes = b"Consultation: tension normale, pas d'allergie connue.",
    fmt: int = R.DOCUMENT_FORMAT_TEXT_PLAIN,
    flags: tuple[int, ...] = (),
    start: datetime | None = None,
    stop: datetime | None = None,
) -> R.Document:
    d = R.Document(
        title=title,
        type_code=type_code,
        content=content,
        format=fmt,
        confidentiality_flags=list(flags),
    )
    d.service_start_time.FromDatetime(start or datetime.now(UTC) - timedelta(days=1))
    if stop is not None:
        d.service_stop_time.FromDatetime(stop)
    return d


async def add_doc(records: RecordsCalls, parent: str, principal: Any = None, **kw: Any) -> Any:
    req = R.CreateDocumentRequest(parent=parent, document=doc(**kw), request_id=rid())
    return await records.call("CreateDocument", req, principal or professional())


async def expect_error(
    coro: Any, code: grpc.StatusCode, reason: str | None = None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro
    err = caught.value
    assert err.code() == code, (err.code(), err.details())
    if reason is not None:
        info = error_info(err)
        assert info is not None
        assert info.reason == reason, info.reason
    return err


__all__ = ["desk", "make_ins", "patient", "professional"]
