"""The access rules of docs/ARCHITECTURE.md, rule by rule, through the launcher-started
gateway, as patients and professionals of several professions, with real certificates and tokens."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import (
    consent,
    eventually,
    expect,
    grant,
    listed,
    new_record,
    patient_md,
    records,
    rid,
    rpps,
    upload,
)
from tests.fixtures.stack import test_card
from tests.records.helpers import doc

R = records_pb2
C = consent_pb2
S = grpc.StatusCode


async def test_rule3_grant_then_revoke_drops_cached_decision(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    stub = records(stack.card_channel("pharmacist"))
    await expect(stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.NOT_FOUND)
    patient = consent(stack.patient_channel())
    rule = await patient.GrantAccess(
        C.GrantAccessRequest(
            parent=dossier,
            professional_rpps=rpps("pharmacist"),
            request_id=rid(),
        ),
        metadata=patient_md(stack, ins),
    )
    await stub.ListDocuments(R.ListDocumentsRequest(parent=dossier))  # allowed, now cached
    await patient.RevokeAccess(
        C.RevokeAccessRequest(name=rule.name, request_id=rid()), metadata=patient_md(stack, ins)
    )
    for _ in range(100):  # the consent.changed event voids the cache, well before its TTL
        try:
            await stub.ListDocuments(R.ListDocumentsRequest(parent=dossier))
        except grpc.aio.AioRpcError as err:
            code = err.code()
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("revoked grant still honoured")
    assert code == S.NOT_FOUND


async def test_rule4_matrix_pharmacist_and_optician(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    for card in ("doctor", "pharmacist", "optician"):
        await grant(stack, dossier, ins, card)
    report = await upload(stack, "doctor", dossier)  # 11488-4, class 10
    prescription = await upload(stack, "doctor", dossier, type_code="57833-6")  # class 42
    for card in ("pharmacist", "optician"):
        stub = records(stack.card_channel(card))
        listed = await stub.ListDocuments(R.ListDocumentsRequest(parent=dossier))
        names = [d.name for d in listed.documents]
        assert prescription.name in names, card
        assert report.name not in names, card
        err = await expect(stub.GetDocument(R.GetDocumentRequest(name=report.name)), S.NOT_FOUND)
        assert err is not None


async def test_rule4_administrative_staff_reads_no_medical_document(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    stub = records(stack.card_channel("admin"))
    assert (await stub.GetDossier(R.GetDossierRequest(name=dossier))).name == dossier
    await expect(stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.PERMISSION_DENIED)


async def test_rule2_blocked_professional_refused_even_in_emergency(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor2")
    patient = consent(stack.patient_channel())
    await patient.BlockProfessional(
        C.BlockProfessionalRequest(
            parent=dossier,
            professional_rpps=rpps("doctor2"),
            request_id=rid(),
        ),
        metadata=patient_md(stack, ins),
    )
    stub = records(stack.card_channel("doctor2"))
    await expect(stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.NOT_FOUND)
    emergency = consent(stack.card_channel("doctor2"))
    err = await expect(
        emergency.StartEmergencyAccess(
            C.StartEmergencyAccessRequest(
                parent=dossier,
                mode=principal_pb2.ACCESS_MODE_BRIS_DE_GLACE,
                reason=C.EMERGENCY_REASON_IMMEDIATE_VITAL_RISK,
                justification="Patient inconscient aux urgences",
                request_id=rid(),
            )
        ),
        S.NOT_FOUND,
    )
    assert err is not None


async def test_rule5_write_needs_no_grant(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    written = await upload(stack, "doctor2", dossier)
    patient = records(stack.patient_channel())
    seen = await patient.GetDocument(
        R.GetDocumentRequest(name=written.name), metadata=patient_md(stack, ins)
    )
    assert seen.name == written.name


async def test_rule7_centre_15_reads_and_patient_sees_it(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await upload(stack, "doctor2", dossier)
    regulateur = consent(stack.card_channel("regulateur"))
    await regulateur.StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_CENTRE_15,
            reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
            justification="Appel au 15 pour douleur thoracique",
            request_id=rid(),
        )
    )
    stub = records(stack.card_channel("regulateur"))
    listed = await stub.ListDocuments(R.ListDocumentsRequest(parent=dossier))
    assert len(listed.documents) == 1
    patient = consent(stack.patient_channel())
    history = await patient.ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=100),
        metadata=patient_md(stack, ins),
    )
    modes = {e.mode for e in history.entries}
    assert principal_pb2.ACCESS_MODE_CENTRE_15 in modes


async def test_rule7_opposed_centre_15_is_refused(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    patient = consent(stack.patient_channel())
    await patient.SetEmergencyPreferences(
        C.SetEmergencyPreferencesRequest(
            name=dossier,
            preferences=C.EmergencyPreferences(oppose_centre_15=True),
            request_id=rid(),
        ),
        metadata=patient_md(stack, ins),
    )
    regulateur = consent(stack.card_channel("regulateur"))
    with_error = regulateur.StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_CENTRE_15,
            reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
            justification="Appel au 15 pour douleur thoracique",
            request_id=rid(),
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await with_error
    assert caught.value.code() in (S.PERMISSION_DENIED, S.NOT_FOUND)


async def test_rule1_no_credential_and_unknown_or_excluded_roles(stack: LiveStack) -> None:
    dossier, _ = await new_record(stack)
    anonymous = records(stack.patient_channel())
    await expect(anonymous.GetDossier(R.GetDossierRequest(name=dossier)), S.UNAUTHENTICATED)
    # Staff cards the directory does not list never reach the policy.
    for stem in ("insurer", "conseil"):
        stub = records(stack.card_channel(test_card(stack, stem)))
        await expect(
            stub.GetDossier(R.GetDossierRequest(name=dossier)),
            S.UNAUTHENTICATED,
            "CERTIFICATE_UNKNOWN",
        )
    # A registered staff card with an excluded role is refused by the policy.
    stub = records(stack.card_channel("medecin_conseil"))
    await expect(stub.GetDossier(R.GetDossierRequest(name=dossier)), S.PERMISSION_DENIED)
    await expect(stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.PERMISSION_DENIED)


async def test_rule2_attending_physician_cannot_be_blocked_and_reads_without_grant(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    written = await upload(stack, "doctor2", dossier)
    patient = consent(stack.patient_channel())
    md = patient_md(stack, ins)
    await patient.SetAttendingPhysician(
        C.SetAttendingPhysicianRequest(
            name=dossier, professional_rpps=rpps("doctor"), request_id=rid()
        ),
        metadata=md,
    )
    assert written.name in await eventually(lambda: listed(stack, "doctor", dossier))  # rule 3
    await expect(
        patient.BlockProfessional(
            C.BlockProfessionalRequest(
                parent=dossier, professional_rpps=rpps("doctor"), request_id=rid()
            ),
            metadata=md,
        ),
        S.FAILED_PRECONDITION,
        "CANNOT_BLOCK_ATTENDING_PHYSICIAN",
    )


async def test_rule4_nurse_and_dietitian_read_their_part_only(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    for card in ("nurse", "dietitian"):
        await grant(stack, dossier, ins, card)
    report = await upload(stack, "doctor", dossier)  # 11488-4, class 10
    synthesis = await upload(stack, "doctor", dossier, type_code="34133-9")  # class 11
    for card in ("nurse", "dietitian"):
        names = await listed(stack, card, dossier)
        assert synthesis.name in names, card
        assert report.name not in names, card
    # Writing is the matrix's business too: a dietitian writes no report.
    await expect(upload(stack, "dietitian", dossier), S.PERMISSION_DENIED)


async def test_rule5_only_the_author_deletes_and_replacing_keeps_the_old_version(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor2")
    first = await upload(stack, "doctor", dossier)
    other = records(stack.card_channel("doctor2"))
    await expect(
        other.DeleteDocument(R.DeleteDocumentRequest(name=first.name, request_id=rid())),
        S.PERMISSION_DENIED,
    )
    author = records(stack.card_channel("doctor"))
    replaced = await author.ReplaceDocument(
        R.ReplaceDocumentRequest(
            name=first.name, document=doc(title="Compte rendu corrigé"), request_id=rid()
        ),
        timeout=10,
    )
    assert replaced.name != first.name
    old = await other.GetDocument(R.GetDocumentRequest(name=first.name))
    assert old.status == R.DOCUMENT_STATUS_DEPRECATED
    deleted = await author.DeleteDocument(
        R.DeleteDocumentRequest(name=replaced.name, request_id=rid()), timeout=10
    )
    assert deleted.status == R.DOCUMENT_STATUS_DELETED
    assert replaced.name not in await listed(stack, "doctor2", dossier)


async def test_rule6_invisible_patient_hides_a_document_from_the_patient(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    hidden = await upload(
        stack, "doctor", dossier, flags=(R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT,)
    )
    shown = await upload(stack, "doctor", dossier)
    patient = records(stack.patient_channel())
    md = patient_md(stack, ins)
    await expect(
        patient.GetDocument(R.GetDocumentRequest(name=hidden.name), metadata=md), S.NOT_FOUND
    )
    seen = await patient.ListDocuments(R.ListDocumentsRequest(parent=dossier), metadata=md)
    assert [d.name for d in seen.documents] == [shown.name]
    await grant(stack, dossier, ins, "doctor")  # reading needs a grant, even the author's
    author = records(stack.card_channel("doctor"))
    assert (await author.GetDocument(R.GetDocumentRequest(name=hidden.name))).name == hidden.name


async def test_rule7_bris_de_glace_reads_without_grant_and_is_logged(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    written = await upload(stack, "doctor", dossier)
    stub = records(stack.card_channel("doctor2"))
    await expect(stub.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.NOT_FOUND)
    emergency = consent(stack.card_channel("doctor2"))
    await emergency.StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_BRIS_DE_GLACE,
            reason=C.EMERGENCY_REASON_IMMEDIATE_VITAL_RISK,
            justification="Patient inconscient aux urgences",
            request_id=rid(),
        )
    )
    names = await eventually(lambda: listed(stack, "doctor2", dossier))
    assert written.name in names
    history = await consent(stack.patient_channel()).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=100), metadata=patient_md(stack, ins)
    )
    assert principal_pb2.ACCESS_MODE_BRIS_DE_GLACE in {e.mode for e in history.entries}


async def test_rule8_every_decision_is_logged_and_the_chain_verifies(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await grant(stack, dossier, ins, "doctor")
    await listed(stack, "doctor", dossier)
    pharmacist = records(stack.card_channel("pharmacist"))
    await expect(pharmacist.ListDocuments(R.ListDocumentsRequest(parent=dossier)), S.NOT_FOUND)
    patient = consent(stack.patient_channel())
    md = patient_md(stack, ins)
    history = await patient.ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=200), metadata=md
    )
    by_rpps = {
        (e.principal.rpps, e.decision)
        for e in history.entries
        if e.method.endswith("/ListDocuments")
    }
    assert (rpps("doctor"), C.DECISION_ALLOWED) in by_rpps
    assert (rpps("pharmacist"), C.DECISION_DENIED) in by_rpps
    assert all(e.policy_version for e in history.entries)
    verified = await patient.VerifyAccessLog(C.VerifyAccessLogRequest(parent=dossier), metadata=md)
    assert verified.ok
    assert verified.verified_entry_count >= len(history.entries)
