"""Bad input and attacks, each through the launcher-started gateway with real certificates."""

from __future__ import annotations

import grpc

from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals as test_principals
from dmp_dev.testing.stack import LiveStack
from kit import principal as principals
from tests.e2e.helpers import (
    bearer,
    eventually,
    expect,
    grant,
    new_record,
    patient_md,
    records,
    upload,
)
from tests.fixtures.stack import MAX_MESSAGE_BYTES, test_card

R = records_pb2
S = grpc.StatusCode
GET_DOSSIER = "/dmp.records.v1.RecordsService/GetDossier"


async def test_no_credential_is_unauthenticated(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    stub = records(stack.patient_channel())
    await expect(stub.GetDossier(R.GetDossierRequest(name=dossier)), S.UNAUTHENTICATED)


async def test_anonymous_method_passes_without_credential(stack: LiveStack) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    # Reaches identity (its own validation answers), so the gateway let it through.
    await expect(stub.StartLogin(identity_pb2.StartLoginRequest(), timeout=10), S.INVALID_ARGUMENT)


async def test_forged_principal_from_client_is_stripped(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    # A perfectly signed principal (as if the key leaked) claiming to be the patient:
    # the gateway drops every client dmp-* header, so it is never seen upstream.
    forged = test_principals.metadata(test_principals.patient(ins), GET_DOSSIER)
    stub = records(stack.patient_channel())
    await expect(
        stub.GetDossier(R.GetDossierRequest(name=dossier), metadata=forged), S.UNAUTHENTICATED
    )
    # With a card, the forged header does not widen the card's own rights either.
    optician = records(stack.card_channel("optician"))
    junk = ((principals.METADATA_KEY, b"\x00forged"), ("dmp-scope-bin", b"x"))
    await expect(optician.GetDossier(R.GetDossierRequest(name=dossier), metadata=junk), S.NOT_FOUND)


async def test_certificate_from_another_ca_is_refused(stack: LiveStack) -> None:
    stub = records(stack.card_channel(test_card(stack, "other_ca")))
    await expect(stub.GetDossier(R.GetDossierRequest(name="dossiers/x"), timeout=5), S.UNAVAILABLE)


async def test_expired_certificate_is_refused(stack: LiveStack) -> None:
    stub = records(stack.card_channel("expired"))
    err = await expect(
        stub.GetDossier(R.GetDossierRequest(name="dossiers/x"), timeout=5), S.UNAVAILABLE
    )
    assert err is not None


async def test_revoked_certificate_is_refused(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    stub = records(stack.card_channel("revoked"))
    await expect(
        stub.GetDossier(R.GetDossierRequest(name=dossier), timeout=5),
        S.UNAUTHENTICATED,
        "CERTIFICATE_REVOKED",
    )


async def test_card_not_in_directory_is_refused(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    stub = records(stack.card_channel(test_card(stack, "unregistered")))
    await expect(
        stub.GetDossier(R.GetDossierRequest(name=dossier), timeout=5),
        S.UNAUTHENTICATED,
        "CERTIFICATE_UNKNOWN",
    )


async def test_patient_token_for_another_patients_record(stack: LiveStack) -> None:
    mine, my_ins = await new_record(stack)
    theirs, _ = await new_record(stack)
    stub = records(stack.patient_channel())
    md = patient_md(stack, my_ins)
    assert (await stub.GetDossier(R.GetDossierRequest(name=mine), metadata=md)).name == mine
    await expect(stub.GetDossier(R.GetDossierRequest(name=theirs), metadata=md), S.NOT_FOUND)


async def test_token_with_changed_signature(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    token = stack.token(ins)
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    stub = records(stack.patient_channel())
    for bad in (f"{head}.{payload}.{flipped}", f"{head}.{payload}.", "not-a-jwt"):
        await expect(
            stub.GetDossier(R.GetDossierRequest(name=dossier), metadata=bearer(bad)),
            S.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )


async def test_method_not_in_protos_is_unimplemented(stack: LiveStack) -> None:
    channel = stack.card_channel("doctor")
    call = channel.unary_unary("/dmp.records.v1.RecordsService/DropDatabase")
    await expect(call(b"", timeout=5), S.UNIMPLEMENTED)
    call = channel.unary_unary("/grpc.reflection.v1alpha.ServerReflection/Anything")
    await expect(call(b"", timeout=5), S.UNIMPLEMENTED)


async def test_internal_method_is_refused(stack: LiveStack) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("doctor"))
    await expect(
        stub.ResolveCertificate(identity_pb2.ResolveCertificateRequest(sha256_fingerprint="ab")),
        S.PERMISSION_DENIED,
        "INTERNAL_METHOD",
    )


async def test_oversized_message_is_refused(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    channel = stack.card_channel(
        "doctor", options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)]
    )
    stub = records(channel)
    request = R.GetDossierRequest(name=dossier + "x" * (2 * MAX_MESSAGE_BYTES))
    await expect(stub.GetDossier(request, timeout=10), S.RESOURCE_EXHAUSTED)


async def test_occupational_doctor_is_always_refused(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    # The patient cannot even grant it (tests/gateway/test_decisions_at_edge.py), and a card
    # whose role is excluded is refused whatever it asks.
    await expect(grant(stack, dossier, ins, "occupational"), S.FAILED_PRECONDITION)
    stub = records(stack.card_channel("occupational"))
    await expect(
        stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)),
        S.PERMISSION_DENIED,
        "ROLE_EXCLUDED",
    )


async def test_amo_never_reads(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    stub = records(stack.card_channel("amo"))
    err = await expect(
        stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.PERMISSION_DENIED
    )
    assert err.code() != S.OK
    history = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo"))
    await expect(
        history.GetCareHistory(history_pb2.GetCareHistoryRequest(name=dossier + "/careHistory")),
        S.PERMISSION_DENIED,
    )


async def test_masked_document_hidden_from_other_professionals(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor")
    await grant(stack, dossier, ins, "doctor2")
    masked = await upload(stack, "doctor", dossier, flags=(R.CONFIDENTIALITY_FLAG_MASQUE_PS,))
    other = records(stack.card_channel("doctor2"))
    await expect(other.GetDocument(R.GetDocumentRequest(name=masked.name)), S.NOT_FOUND)
    listed = await other.ListDocuments(R.ListDocumentsRequest(parent=dossier))
    assert masked.name not in [d.name for d in listed.documents]
    author = records(stack.card_channel("doctor"))
    assert (await author.GetDocument(R.GetDocumentRequest(name=masked.name))).name == masked.name
    patient = records(stack.patient_channel())
    seen = await patient.GetDocument(
        R.GetDocumentRequest(name=masked.name), metadata=patient_md(stack, ins)
    )
    assert seen.name == masked.name


async def test_record_enumeration_absent_equals_forbidden(stack: LiveStack) -> None:
    existing, _ = await new_record(stack)
    absent = "dossiers/" + "0" * 32
    stub = records(stack.card_channel("pharmacist"))
    errors = []
    for name in (existing, absent):
        errors.append(await expect(stub.GetDossier(R.GetDossierRequest(name=name)), S.NOT_FOUND))
    assert errors[0].details() == errors[1].details()
    assert errors[0].trailing_metadata() == errors[1].trailing_metadata()


async def test_upstream_down_is_unavailable(stack: LiveStack) -> None:
    # history_feed killed: allowed calls to it are UNAVAILABLE, then work again once restarted.
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor")
    stub = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("doctor"))
    request = history_pb2.GetCareHistoryRequest(name=dossier + "/careHistory")
    await stub.GetCareHistory(request, timeout=10)
    await stack.kill_service("history_feed")
    try:
        await expect(
            stub.GetCareHistory(request, timeout=10), S.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"
        )
    finally:
        await stack.start_service("history_feed")
    await eventually(lambda: stub.GetCareHistory(request, timeout=10), retry_on=(S.UNAVAILABLE,))


async def test_signed_principal_reaches_service_with_scope(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    stub = records(stack.patient_channel())
    got = await stub.GetDossier(R.GetDossierRequest(name=dossier), metadata=patient_md(stack, ins))
    assert got.patient_ins == ins
