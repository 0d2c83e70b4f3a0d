"""Who may record a vaccination (issue 15): the matrix's `record` key, against consent.

Nurses and pharmacists record vaccinations (the matrix's `record: [vaccination]`) only on a
record they have an access to in normal mode (a grant, a care-context attestation); they do
not thereby write class 52 documents (certificates). Sages-femmes, médecins and
chirurgiens-dentistes write class 52, which vaccinations belong to, under rule 5 (no read
grant needed). Every other profession is refused (deny by default); a caller without
standing learns nothing about the record (NO_GRANT, NOT_FOUND).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pytest

from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from services.consent import matrix as matrix_mod
from tests.consent.helpers import A, C, P, block, emergency, grant, pro, rid
from tests.fixtures.consent import ConsentHarness, new_ins

ALLOWED, DENIED = C.DECISION_ALLOWED, C.DECISION_DENIED
NF, PD, FP = 5, 7, 9
VACCINATION = A.RESOURCE_KIND_VACCINATION
CREATE = "/dmp.records.v1.RecordsService/CreateVaccination"
LIST = "/dmp.records.v1.RecordsService/ListVaccinations"

WHO = {
    "nurse": ("60", ""),
    "ipa": ("60", "SI01"),  # infirmier en pratique avancée
    "psy_nurse": ("69", ""),  # infirmier psychiatrique: not in the matrix's vaccinators
    "pharmacist": ("21", ""),
    "midwife": ("50", ""),
    "doctor": ("10", ""),
    "dentist": ("40", ""),
    "physio": ("70", ""),
    "optician": ("28", ""),
    "dietitian": ("95", ""),
}


@dataclass(frozen=True)
class Case:
    name: str
    who: str
    setup: tuple[str, ...]
    expect: tuple[int, str, int]
    action: int = A.ACTION_WRITE
    kind: int = VACCINATION
    method: str = CREATE
    log_reason: str = ""
    resource: tuple[tuple[str, str], ...] = ()


OK_GRANT = (ALLOWED, "ACCESS_GRANTED", 0)
HIDDEN = (DENIED, "NO_GRANT", NF)
NOT_WRITABLE = (DENIED, "CLASS_NOT_WRITABLE", PD)
CASES = [
    # Who may record, with an access to the record.
    Case("nurse-with-grant", "nurse", ("grant",), OK_GRANT),
    Case("ipa-with-grant", "ipa", ("grant",), OK_GRANT),
    Case("pharmacist-with-grant", "pharmacist", ("grant",), OK_GRANT),
    Case("nurse-care-context", "nurse", ("care",), (ALLOWED, "ACCESS_GRANTED", 0)),
    Case("midwife-with-grant", "midwife", ("grant",), (ALLOWED, "WRITE_RIGHT", 0)),
    # Writers of class 52 keep rule 5: writing needs no read grant.
    Case("midwife-without-grant", "midwife", (), (ALLOWED, "WRITE_RIGHT", 0)),
    Case("doctor-without-grant", "doctor", (), (ALLOWED, "WRITE_RIGHT", 0)),
    # No access: nothing is learnt about the record (AIP-211).
    Case("nurse-without-grant", "nurse", (), HIDDEN),
    Case("pharmacist-without-grant", "pharmacist", (), HIDDEN),
    Case("nurse-grant-revoked", "nurse", ("grant", "revoke"), HIDDEN),
    Case("nurse-blocked", "nurse", ("grant", "block"), HIDDEN, log_reason="PROFESSIONAL_BLOCKED"),
    Case("midwife-blocked", "midwife", ("block",), HIDDEN, log_reason="PROFESSIONAL_BLOCKED"),
    # An emergency opens reading, not recording.
    Case(
        "nurse-bris-de-glace",
        "nurse",
        ("emergency",),
        NOT_WRITABLE,
        log_reason="EMERGENCY_MODE_NO_RECORDING",
    ),
    # Professions the matrix does not let record vaccinations, even with a grant.
    Case("physio-with-grant", "physio", ("grant",), NOT_WRITABLE),
    Case("optician-with-grant", "optician", ("grant",), NOT_WRITABLE),
    Case("dietitian-with-grant", "dietitian", ("grant",), NOT_WRITABLE),
    Case("psychiatric-nurse-with-grant", "psy_nurse", ("grant",), NOT_WRITABLE),
    Case("physio-without-grant", "physio", (), HIDDEN),
    # The vaccination right is not a right on class 52 documents (certificates).
    Case(
        "nurse-certificate-document",
        "nurse",
        ("grant",),
        NOT_WRITABLE,
        kind=A.RESOURCE_KIND_DOCUMENT,
        method="/dmp.records.v1.RecordsService/CreateDocument",
        resource=(("document_class_code", "52"), ("document_type_code", "89601-9")),
    ),
    Case(
        "pharmacist-certificate-document",
        "pharmacist",
        ("grant",),
        NOT_WRITABLE,
        kind=A.RESOURCE_KIND_DOCUMENT,
        method="/dmp.records.v1.RecordsService/CreateDocument",
        resource=(("document_class_code", "52"),),
    ),
    # Reading the vaccination book: class 52 readers with an access.
    Case("nurse-reads-book", "nurse", ("grant",), OK_GRANT, action=A.ACTION_READ, method=LIST),
    Case("physio-reads-book", "physio", ("grant",), OK_GRANT, action=A.ACTION_READ, method=LIST),
    # A closed record refuses them all (rule 9).
    Case("nurse-closed-record", "nurse", ("grant", "closed"), (DENIED, "DOSSIER_CLOSED", FP)),
]


async def _setup(h: ConsentHarness, case: Case) -> tuple[str, P.Principal]:
    ins = new_ins()
    dossier, _ = await h.create_record(ins)
    profession, specialty = WHO[case.who]
    who = pro(profession, specialty)
    patient = principals.patient(ins)
    for step in case.setup:
        if step == "grant":
            await grant(h, dossier, ins, who.rpps)
        elif step == "revoke":
            rules = await h.call(
                "ListAccessRules", C.ListAccessRulesRequest(parent=dossier), patient
            )
            rule = next(r for r in rules.access_rules if r.professional_rpps == who.rpps)
            await h.call(
                "RevokeAccess", C.RevokeAccessRequest(name=rule.name, request_id=rid()), patient
            )
        elif step == "block":
            await block(h, dossier, ins, who.rpps)
        elif step == "care":
            await h.call(
                "GrantAccess",
                C.GrantAccessRequest(
                    parent=dossier,
                    professional_rpps=who.rpps,
                    care_context=C.CareContext(consent_attested=True),
                    request_id=rid(),
                ),
                who,
            )
        elif step == "emergency":
            await emergency(h, dossier, who)
        elif step == "closed":
            await h.set_state(dossier, ins, records_pb2.DOSSIER_STATE_CLOSED)
    return dossier, who


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_who_may_record_a_vaccination(consent: ConsentHarness, case: Case) -> None:
    dossier, who = await _setup(consent, case)
    response = await consent.authorize(
        who,
        case.action,
        dossier,
        resource_kind=case.kind,
        method=case.method,
        **dict(case.resource),
    )
    decision, reason, status = case.expect
    assert (response.decision, response.reason, response.status_code) == (decision, reason, status)
    if decision == ALLOWED:
        assert response.scope.mode == P.ACCESS_MODE_NORMAL
        # Records is told it may write something: the vaccination, not class 52 documents.
        assert response.scope.writable_class_codes
        if case.who in ("nurse", "ipa", "pharmacist"):
            assert "52" not in response.scope.writable_class_codes
    newest = (await consent.history(dossier))[0]
    assert newest.name == response.access_log_entry
    assert newest.reason == (case.log_reason or reason)
    assert newest.resource_kind == case.kind


def _records_vaccinations(profession: str, specialty: str = "") -> bool:
    rights = matrix_mod.default_matrix().profession_rights(profession, specialty)
    assert rights is not None
    return rights.records(VACCINATION)


def test_matrix_record_key_is_validated() -> None:
    """`record` names resources of `resource_classes`; an unknown one stops consent."""
    assert _records_vaccinations("60")
    assert _records_vaccinations("60", "SI03")
    assert _records_vaccinations("21")
    assert not _records_vaccinations("70")
    assert not _records_vaccinations("10")  # médecins write class 52 instead
    data = resources.files("services.consent.policy").joinpath("matrix.yaml").read_bytes()
    bad = data.replace(b"record: [vaccination]  # vaccinates\n", b"record: [tattoo]\n", 1)
    assert bad != data
    with pytest.raises(matrix_mod.MatrixError, match="unknown resource 'tattoo'"):
        matrix_mod.parse(bad, "bad.yaml")
    # Only professionals record: a patient or role row with `record` is refused.
    bad_patient = data.replace(
        b'  write: ["90"]\n', b'  write: ["90"]\n  record: [vaccination]\n', 1
    )
    assert bad_patient != data
    with pytest.raises(matrix_mod.MatrixError, match="unknown keys"):
        matrix_mod.parse(bad_patient, "bad.yaml")
