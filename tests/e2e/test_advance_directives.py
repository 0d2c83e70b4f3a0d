"""Advance directives through the launcher-started gateway (rule 12): a médecin the patient
granted updates them and the patient is told by e-mail (no content in it); a médecin without
a grant, a granted nurse and an emergency access are refused; both emergency modes read them;
every revision stays readable."""

from __future__ import annotations

import uuid

import grpc

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import (
    consent,
    expect,
    grant,
    mails_to,
    new_record,
    patient_md,
    records,
    rid,
    rpps,
)
from tests.waits import until

R = records_pb2
C = consent_pb2
N = notify_pb2
S = grpc.StatusCode
SUMMARY = "Pas de réanimation prolongée QWERTY"
SUBJECT = "Directives anticipées"


def _update(dossier: str, **fields: object) -> R.UpdateAdvanceDirectivesRequest:
    return R.UpdateAdvanceDirectivesRequest(
        advance_directives=R.AdvanceDirectives(name=f"{dossier}/advanceDirectives", **fields),  # type: ignore[arg-type]
        request_id=rid(),
    )


def _notices(stack: LiveStack, email: str) -> list[str]:
    out = []
    for message in mails_to(stack.mail_dir, email):
        if SUBJECT in str(message["Subject"]):
            body = message.get_body(preferencelist=("plain",))
            out.append(str(body.get_content()) if body is not None else "")
    return out


async def test_advance_directives_writers_readers_and_notices(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    md = patient_md(stack, ins)
    email = f"directives.{uuid.uuid4().hex[:10]}@exemple.fr"
    await notify_pb2_grpc.NotifyServiceStub(stack.patient_channel()).SetContactPreferences(
        N.SetContactPreferencesRequest(
            contact_preferences=N.ContactPreferences(
                name=f"patients/{ins}/contactPreferences", email=email
            ),
            request_id=rid(),
        ),
        metadata=md,
        timeout=10,
    )
    # A médecin the patient granted writes them; the patient is told, without the content.
    await grant(stack, dossier, ins, "doctor")
    doctor = records(stack.card_channel("doctor"))
    first = await doctor.UpdateAdvanceDirectives(
        _update(dossier, written=True, summary=SUMMARY), timeout=15
    )
    assert (first.revision_id, first.provenance.author.rpps) == ("1", rpps("doctor"))
    await until(lambda: len(_notices(stack, email)) == 1, "the directives notice")
    (notice,) = _notices(stack, email)
    assert "QWERTY" not in notice
    assert "directives anticipées" in notice

    # Refused, and nothing written: a médecin without a grant (rule 5's write right is not
    # enough here), a granted nurse, a médecin in an emergency access.
    await expect(
        records(stack.card_channel("doctor2")).UpdateAdvanceDirectives(
            _update(dossier, summary="overwritten"), timeout=15
        ),
        S.NOT_FOUND,
        "NOT_FOUND",  # AIP-211: as for a record it may not know of
    )
    await grant(stack, dossier, ins, "nurse")
    await expect(
        records(stack.card_channel("nurse")).UpdateAdvanceDirectives(
            _update(dossier, summary="overwritten"), timeout=15
        ),
        S.PERMISSION_DENIED,
        "ADVANCE_DIRECTIVES_NOT_WRITABLE",
    )
    await consent(stack.card_channel("doctor2")).StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_BRIS_DE_GLACE,
            reason=C.EMERGENCY_REASON_IMMEDIATE_VITAL_RISK,
            justification="Patient inconscient aux urgences",
            request_id=rid(),
        ),
        timeout=15,
    )
    in_emergency = records(stack.card_channel("doctor2"))
    await expect(
        in_emergency.UpdateAdvanceDirectives(_update(dossier, summary="overwritten"), timeout=15),
        S.PERMISSION_DENIED,
        "ADVANCE_DIRECTIVES_NOT_WRITABLE",
    )

    # Both emergency modes read them: bris de glace, and Centre 15.
    name = f"{dossier}/advanceDirectives"
    seen = await in_emergency.GetAdvanceDirectives(
        R.GetAdvanceDirectivesRequest(name=name), timeout=15
    )
    assert (seen.revision_id, seen.summary) == ("1", SUMMARY)
    await consent(stack.card_channel("regulateur")).StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_CENTRE_15,
            reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
            justification="Appel au 15, patient inconscient",
            request_id=rid(),
        ),
        timeout=15,
    )
    regulateur = records(stack.card_channel("regulateur"))
    seen = await regulateur.GetAdvanceDirectives(
        R.GetAdvanceDirectivesRequest(name=name), timeout=15
    )
    assert seen.summary == SUMMARY
    profile = await regulateur.GetHealthProfile(
        R.GetHealthProfileRequest(name=f"{dossier}/healthProfile"), timeout=15
    )
    assert profile.advance_directives.summary == SUMMARY

    # The patient revises them: a second revision, a second notice; the history keeps both.
    patient = records(stack.patient_channel())
    await patient.UpdateAdvanceDirectives(
        _update(dossier, written=True, summary="Révisées"), metadata=md, timeout=15
    )
    await until(lambda: len(_notices(stack, email)) == 2, "the second notice")
    history = await patient.ListAdvanceDirectivesRevisions(
        R.ListAdvanceDirectivesRevisionsRequest(name=name), metadata=md, timeout=15
    )
    assert [(d.revision_id, d.summary) for d in history.advance_directives] == [
        ("2", "Révisées"),
        ("1", SUMMARY),
    ]
