"""One test per RPC family: the JSON door's answer, parsed back into the proto, is the gRPC
edge's answer for the same patient and request (or the same refusal).

The patient logs in through the door (the non-browser flow, tokens in the answer) and the
same access token is used on both doors. Lists that calls themselves may grow (the access
history) are read gRPC, JSON, gRPC: the JSON answer must be the same log seen between the two
(every read of the log is itself logged, so the three answers always differ by their newest
entries; the entries they share must be identical, field for field).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.door.helpers import Answer, bearer_login, http_client, new_patient, send
from tests.e2e.helpers import bearer, eventually, rid
from tests.records.helpers import doc

HTTP = {0: 200, 3: 400, 5: 404, 7: 403, 16: 401, 9: 400}


async def agree(
    answer: Answer,
    grpc_call: Callable[[], Awaitable[Message]],
    response_class: type[Message],
) -> Message | None:
    """The JSON answer equals the gRPC one (read before or after it), or both refuse alike."""
    refusal: grpc.aio.AioRpcError | None = None
    try:
        before = await grpc_call()
    except grpc.aio.AioRpcError as exc:
        refusal = exc
    if refusal is not None:
        info = error_info(refusal)
        assert answer.status == HTTP[refusal.code().value[0]], (answer, refusal)
        assert answer.reason == (info.reason if info else ""), (answer, refusal)
        assert answer.body["code"] == refusal.code().value[0]
        return None
    assert answer.status == 200, answer
    parsed = json_format.ParseDict(answer.body, response_class())
    if parsed != before:
        after = await grpc_call()
        assert parsed == after, (parsed, before, after)
    return parsed


def _upto(
    response: consent_pb2.ListAccessHistoryResponse, sequence: int
) -> list[consent_pb2.AccessLogEntry]:
    return [entry for entry in response.entries if entry.sequence <= sequence]


async def agree_on_growing_log(
    json_call: Callable[[], Awaitable[Answer]],
    grpc_call: Callable[[], Awaitable[consent_pb2.ListAccessHistoryResponse]],
) -> None:
    """The JSON page is the log as it stood between two gRPC reads, entry for entry."""
    before = await grpc_call()
    answer = await json_call()
    after = await grpc_call()
    assert answer.status == 200, answer
    parsed = json_format.ParseDict(answer.body, consent_pb2.ListAccessHistoryResponse())
    newest = max(entry.sequence for entry in parsed.entries)
    newest_before = max(entry.sequence for entry in before.entries)
    assert newest_before < newest < max(entry.sequence for entry in after.entries)
    assert _upto(parsed, newest_before) == list(before.entries)
    assert list(parsed.entries) == _upto(after, newest)
    assert parsed.next_page_token == before.next_page_token == after.next_page_token == ""


async def test_each_family_answers_the_same_on_both_doors(stack: LiveStack) -> None:
    patient = await new_patient(stack)
    channel = stack.patient_channel()
    async with http_client(stack) as app:
        tokens = await bearer_login(stack, app, patient)
        md = bearer(tokens["accessToken"])
        auth = {"Authorization": f"Bearer {tokens['accessToken']}"}

        async def get(path: str, **params: Any) -> Answer:
            return await send(app, "GET", path, headers=auth, params=params)

        # records: a doctor uploads a document (gRPC, card), the patient lists and reads it.
        records = records_pb2_grpc.RecordsServiceStub(channel)
        doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor"))
        uploaded = await eventually(
            lambda: doctor.CreateDocument(
                records_pb2.CreateDocumentRequest(
                    parent=patient.dossier, document=doc(title="Bilan"), request_id=rid()
                ),
                timeout=10,
            )
        )
        name = uploaded.name
        await agree(
            await get(f"/v1/{name}", view="DOCUMENT_VIEW_FULL"),
            lambda: records.GetDocument(
                records_pb2.GetDocumentRequest(name=name, view=records_pb2.DOCUMENT_VIEW_FULL),
                metadata=md,
                timeout=10,
            ),
            records_pb2.Document,
        )
        await agree(
            await get(f"/v1/{patient.dossier}/documents", pageSize="10"),
            lambda: records.ListDocuments(
                records_pb2.ListDocumentsRequest(parent=patient.dossier, page_size=10),
                metadata=md,
                timeout=10,
            ),
            records_pb2.ListDocumentsResponse,
        )
        await agree(
            await get(f"/v1/patients/{patient.ins}/dossier"),
            lambda: records.GetDossier(
                records_pb2.GetDossierRequest(name=patient.dossier), metadata=md, timeout=10
            ),
            records_pb2.Dossier,
        )
        # health profile
        await agree(
            await get(f"/v1/{patient.dossier}/healthProfile"),
            lambda: records.GetHealthProfile(
                records_pb2.GetHealthProfileRequest(name=f"{patient.dossier}/healthProfile"),
                metadata=md,
                timeout=10,
            ),
            records_pb2.HealthProfile,
        )
        # consent: rules and access history
        consent = consent_pb2_grpc.ConsentServiceStub(channel)
        await agree(
            await get(f"/v1/{patient.dossier}/accessRules", showInactive="true"),
            lambda: consent.ListAccessRules(
                consent_pb2.ListAccessRulesRequest(parent=patient.dossier, show_inactive=True),
                metadata=md,
                timeout=10,
            ),
            consent_pb2.ListAccessRulesResponse,
        )
        await agree_on_growing_log(
            lambda: get(f"/v1/{patient.dossier}/accessLog"),
            lambda: consent.ListAccessHistory(
                consent_pb2.ListAccessHistoryRequest(parent=patient.dossier),
                metadata=md,
                timeout=10,
            ),
        )
        # notify: contact preferences
        notify = notify_pb2_grpc.NotifyServiceStub(channel)
        preferences = f"patients/{patient.ins}/contactPreferences"
        await agree(
            await get(f"/v1/{preferences}"),
            lambda: notify.GetContactPreferences(
                notify_pb2.GetContactPreferencesRequest(name=preferences), metadata=md, timeout=10
            ),
            notify_pb2.ContactPreferences,
        )
        # history: the 24-month care history
        history = history_pb2_grpc.HistoryFeedServiceStub(channel)
        care = f"{patient.dossier}/careHistory"
        await agree(
            await get(f"/v1/{care}"),
            lambda: history.GetCareHistory(
                history_pb2.GetCareHistoryRequest(name=care), metadata=md, timeout=10
            ),
            history_pb2.GetCareHistoryResponse,
        )
        # identity: the directory, and a refusal answered alike (a bad filter)
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        await agree(
            await get("/v1/professionals", filter='profession_code = "10"', pageSize="5"),
            lambda: identity.ListProfessionals(
                identity_pb2.ListProfessionalsRequest(filter='profession_code = "10"', page_size=5),
                metadata=md,
                timeout=10,
            ),
            identity_pb2.ListProfessionalsResponse,
        )
        refused = await agree(
            await get("/v1/professionals", filter="nonsense ~ 1"),
            lambda: identity.ListProfessionals(
                identity_pb2.ListProfessionalsRequest(filter="nonsense ~ 1"),
                metadata=md,
                timeout=10,
            ),
            identity_pb2.ListProfessionalsResponse,
        )
        assert refused is None
