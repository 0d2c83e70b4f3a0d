"""A real journey through the launcher-started platform leaves no medical or personal data in
any log, and the JSON log lines of one call carry its trace id in every process."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import bearer, mails_to, one_time_code, records, rid, wait_known
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request, doc

ID = identity_pb2
N = notify_pb2
R = records_pb2


def _log_lines(logs_dir: Path) -> dict[str, list[str]]:
    return {
        path.name: path.read_text(encoding="utf-8", errors="replace").splitlines()
        for path in sorted(logs_dir.glob("*.log"))
    }


def _json_events(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


async def _wait_mail(mail_dir: Path, address: str, subject_word: str) -> None:
    for _ in range(300):
        if any(subject_word in str(m["Subject"]).lower() for m in mails_to(mail_dir, address)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {subject_word!r} e-mail to {address}")


async def test_journey_logs_hold_no_medical_or_personal_data(stack: LiveStack) -> None:
    marker = uuid.uuid4().hex[:10]
    family_name = f"ZORGLUBIAN{marker.upper()}"
    given_name = f"Philemonette{marker}"
    content = f"Diagnostic confidentiel {marker}: sarcoidose pulmonaire stade II"
    password = f"Horse-Battery-{marker}-42"
    email = f"patient.{marker}@exemple.fr"
    ins = make_ins()

    # Sign-up: a creation code from the CPAM desk, an account, a login with a one-time code.
    desk_identity = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk_identity.IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=password,
            email=email,
        ),
        timeout=15,
    )
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=password), timeout=15
    )
    code = await one_time_code(stack.mail_dir, email)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    token = verified.tokens.access_token
    patient_md = bearer(token)

    # The record, named after the patient, created at the desk.
    request = create_request(ins)
    request.dossier.identity.birth_family_name = family_name
    del request.dossier.identity.birth_given_names[:]
    request.dossier.identity.birth_given_names.append(given_name)
    dossier = await records(stack.card_channel("desk")).CreateDossier(request, timeout=15)
    await wait_known(stack, dossier.name, ins)
    await notify_pb2_grpc.NotifyServiceStub(stack.patient_channel()).SetContactPreferences(
        N.SetContactPreferencesRequest(
            request_id=rid(),
            contact_preferences=N.ContactPreferences(
                name=f"patients/{ins}/contactPreferences",
                email=email,
                choices=[
                    N.ChannelChoice(
                        kind=N.NOTIFICATION_KIND_DOCUMENT_ADDED, channels=[N.CHANNEL_EMAIL]
                    )
                ],
            ),
        ),
        metadata=patient_md,
        timeout=10,
    )

    # The doctor uploads the document in a trace the client starts; the patient reads it.
    trace_id = f"{random.getrandbits(128):032x}"
    traceparent = f"00-{trace_id}-{random.getrandbits(64):016x}-01"
    document = await records(stack.card_channel("doctor")).CreateDocument(
        R.CreateDocumentRequest(
            parent=dossier.name, document=doc(content=content.encode()), request_id=rid()
        ),
        metadata=(("traceparent", traceparent),),
        timeout=15,
    )
    read = await records(stack.patient_channel()).GetDocument(
        R.GetDocumentRequest(name=document.name), metadata=patient_md, timeout=10
    )
    assert read.content == content.encode()
    await _wait_mail(stack.mail_dir, email, "document")

    logs = _log_lines(stack.logs_dir)
    assert {"gateway.log", "records.log", "notify.log", "identity.log"} <= set(logs)
    forbidden = {
        "document content": content,
        "content marker": f"confidentiel {marker}",
        "family name": family_name,
        "given name": given_name,
        "password": password,
        "e-mail address": email,
        "access token": token,
        "creation code": issued.creation_code,
    }
    for name, lines in logs.items():
        for label, secret in forbidden.items():
            leaks = [line for line in lines if secret.lower() in line.lower()]
            assert not leaks, f"{label} in {name}: {leaks[:2]}"

    # One call, one trace id in the JSON lines of every process it crossed.
    in_trace = {
        name: [e for e in _json_events(lines) if e.get("trace_id") == trace_id]
        for name, lines in logs.items()
    }
    create_lines = [e for e in in_trace["records.log"] if e.get("event") == "rpc"]
    assert create_lines
    assert all(len(str(e.get("span_id", ""))) == 16 for e in create_lines)
    assert any(e.get("subject") == "dmp.records.document.added" for e in in_trace["notify.log"])
