"""DMP Info Service's role in the access matrix: one action (reissue an activation path) on
a record that exists, decided every time (never cached at the edge), logged, and alerted
through `dmp.consent.access.recorded`; refused every read and write of the record, as every
other caller is refused that action."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dmp.consent.v1 import events_pb2
from dmp_dev.testing import principals
from kit import codes
from tests.consent.helpers import A, C, emergency, grant, pro
from tests.fixtures.consent import ConsentHarness
from tests.fixtures.records import make_ins

SUPPORT = principals.staff("CN=Agent DMP Info Service", ("info_service",))
REISSUE = "/dmp.identity.v1.IdentityService/ReissueActivation"


async def test_the_support_agent_reissues_on_an_existing_record_logged_and_alerted(
    consent: ConsentHarness,
) -> None:
    dossier, ins = await consent.create_record()
    response = await consent.authorize(
        SUPPORT,
        A.ACTION_REISSUE_ACTIVATION,
        resource_kind=A.RESOURCE_KIND_ACCOUNT,
        method=REISSUE,
        patient_ins=ins,
    )
    assert response.decision == C.DECISION_ALLOWED
    assert not response.scope.readable_class_codes
    assert not response.scope.writable_class_codes
    # Never cached: every reissue reaches consent, so every one is logged and alerted.
    assert response.cache_expire_time.ToDatetime(UTC) <= datetime.now(UTC)
    entries = await consent.history(dossier)
    assert entries[0].name == response.access_log_entry
    assert entries[0].action == A.ACTION_REISSUE_ACTIVATION
    assert entries[0].decision == C.DECISION_ALLOWED
    assert list(entries[0].principal.roles) == ["info_service"]
    alerts = await consent.wait_events(
        lambda subject, m: (
            isinstance(m, events_pb2.AccessRecorded)
            and m.access_log_entry == response.access_log_entry
        )
    )
    assert len(alerts) == 1
    assert alerts[0].activation_reissued
    assert not alerts[0].first_access
    assert not alerts[0].emergency


async def test_no_record_no_reissue(consent: ConsentHarness) -> None:
    response = await consent.authorize(
        SUPPORT,
        A.ACTION_REISSUE_ACTIVATION,
        resource_kind=A.RESOURCE_KIND_ACCOUNT,
        method=REISSUE,
        patient_ins=make_ins(),
    )
    assert response.decision == C.DECISION_DENIED
    assert response.reason == "NO_GRANT"


@pytest.mark.parametrize("cls", sorted(codes.table("document_classes")))
async def test_the_support_agent_reads_and_writes_nothing(
    consent: ConsentHarness, cls: str
) -> None:
    dossier, _ = await consent.create_record()
    for action in (A.ACTION_READ, A.ACTION_WRITE, A.ACTION_DELETE):
        response = await consent.authorize(SUPPORT, action, dossier, document_class_code=cls)
        assert response.decision == C.DECISION_DENIED, (action, cls)
    for action, kind in (
        (A.ACTION_READ, A.RESOURCE_KIND_HEALTH_PROFILE),
        (A.ACTION_READ, A.RESOURCE_KIND_VACCINATION),
        (A.ACTION_READ, A.RESOURCE_KIND_CARE_HISTORY),
        (A.ACTION_READ_ADMINISTRATIVE, A.RESOURCE_KIND_DOSSIER),
        (A.ACTION_READ_ACCESS_LOG, A.RESOURCE_KIND_ACCESS_LOG),
        (A.ACTION_READ_ACCESS_RULES, A.RESOURCE_KIND_ACCESS_RULE),
        (A.ACTION_MANAGE_CONSENT, A.RESOURCE_KIND_ACCESS_RULE),
        (A.ACTION_MANAGE_RECORD, A.RESOURCE_KIND_DOSSIER),
        (A.ACTION_EMERGENCY_ACCESS, A.RESOURCE_KIND_DOSSIER),
        (A.ACTION_ISSUE_CREATION_CODE, A.RESOURCE_KIND_ACCOUNT),
    ):
        response = await consent.authorize(SUPPORT, action, dossier, resource_kind=kind)
        assert response.decision == C.DECISION_DENIED, (action, kind)


async def test_nobody_else_reissues(consent: ConsentHarness) -> None:
    _, ins = await consent.create_record()
    for who in (
        principals.patient(ins),
        pro("10"),
        principals.staff("cpam-1", ("guichet_amo",)),
        principals.staff("staff-1", ("administratif",)),
        principals.service(),
    ):
        response = await consent.authorize(
            who,
            A.ACTION_REISSUE_ACTIVATION,
            resource_kind=A.RESOURCE_KIND_ACCOUNT,
            method=REISSUE,
            patient_ins=ins,
        )
        assert response.decision == C.DECISION_DENIED, who


ISSUE = "/dmp.identity.v1.IdentityService/IssueActivationLetter"


async def test_who_prints_the_letter_of_an_existing_record(consent: ConsentHarness) -> None:
    """A professional with normal standing (grant) may; one without, or only through an
    emergency access, may not; the desk always may; any professional for an INS without a
    record (the creation flow)."""
    dossier, ins = await consent.create_record()
    granted, stranger, urgent = pro("21"), pro("10"), pro("10")
    await grant(consent, dossier, ins, granted.rpps)
    await emergency(consent, dossier, urgent)

    async def decide(who: object, patient_ins: str) -> int:
        response = await consent.authorize(
            who,  # type: ignore[arg-type]
            A.ACTION_ISSUE_CREATION_CODE,
            resource_kind=A.RESOURCE_KIND_ACCOUNT,
            method=ISSUE,
            patient_ins=patient_ins,
        )
        return int(response.decision)

    assert await decide(granted, ins) == C.DECISION_ALLOWED
    assert await decide(stranger, ins) == C.DECISION_DENIED
    assert await decide(urgent, ins) == C.DECISION_DENIED
    assert await decide(principals.staff("cpam-1", ("guichet_amo",)), ins) == C.DECISION_ALLOWED
    assert await decide(stranger, make_ins()) == C.DECISION_ALLOWED
    assert await decide(SUPPORT, make_ins()) == C.DECISION_DENIED
