"""Access rules 1–11 (docs/ARCHITECTURE.md) table-driven against consent (Authorize + RPCs).

Each case gets a fresh record (published as a records event), applies its
set-up through consent's own RPCs, then asks Authorize as the gateway would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from kit import clock
from tests.consent.helpers import A, C, P, attending, block, emergency, grant, oppose, pro, rid
from tests.fixtures.consent import ConsentHarness, new_ins

ALLOWED, DENIED = C.DECISION_ALLOWED, C.DECISION_DENIED
READ, WRITE, DELETE = A.ACTION_READ, A.ACTION_WRITE, A.ACTION_DELETE
ADMIN_READ, MANAGE = A.ACTION_READ_ADMINISTRATIVE, A.ACTION_MANAGE_RECORD
RECORDS = "/dmp.records.v1.RecordsService/"
AD = A.RESOURCE_KIND_ADVANCE_DIRECTIVES


@dataclass
class Case:
    rule: str
    name: str
    who: str
    action: int
    expect: tuple[int, str, int]  # decision, reason, status code
    setup: tuple[str, ...] = ()
    kind: int = A.RESOURCE_KIND_DOCUMENT
    method: str = ""
    resource: dict[str, object] = field(default_factory=dict)
    mode: int | None = None
    log_reason: str = ""  # precise reason in the log when the answer is folded (AIP-211)

    @property
    def id(self) -> str:
        return f"rule{self.rule}-{self.name}"


def doc(cls: str = "10", **extra: object) -> dict[str, object]:
    return {"document_class_code": cls, **extra}


NF, PD, FP, UA = 5, 7, 9, 16
CASES = [
    # 1: authentication and excluded / unknown roles
    Case("1", "anonymous", "anonymous", READ, (DENIED, "UNAUTHENTICATED", UA), resource=doc()),
    Case(
        "1",
        "occupational-role",
        "occupational",
        READ,
        (DENIED, "ROLE_EXCLUDED", PD),
        ("grant:occupational",),
        resource=doc(),
    ),
    Case(
        "1",
        "medecin-conseil",
        "conseil",
        READ,
        (DENIED, "ROLE_EXCLUDED", PD),
        ("grant:conseil",),
        resource=doc(),
    ),
    Case(
        "1",
        "occupational-specialty",
        "sm25",
        READ,
        (DENIED, "PROFESSION_EXCLUDED", PD),
        ("grant:sm25",),
        resource=doc(),
    ),
    Case("1", "unknown-role", "insurer", READ, (DENIED, "ROLE_UNKNOWN", PD), resource=doc()),
    # 2: blocks, emergencies included
    Case(
        "2",
        "blocked-after-grant",
        "doc",
        READ,
        (DENIED, "NO_GRANT", NF),
        ("grant:doc", "block:doc"),
        resource=doc(),
        log_reason="PROFESSIONAL_BLOCKED",
    ),
    Case(
        "2",
        "blocked-write",
        "doc",
        WRITE,
        (DENIED, "NO_GRANT", NF),
        ("block:doc",),
        resource=doc(),
        log_reason="PROFESSIONAL_BLOCKED",
    ),
    Case(
        "2",
        "blocked-other-allowed",
        "doc2",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("block:doc", "grant:doc2"),
        resource=doc(),
    ),
    # 3: grant, attestation, attending, emergency; nothing else
    Case(
        "3",
        "no-grant",
        "doc",
        READ,
        (DENIED, "NO_GRANT", NF),
        resource=doc(),
        log_reason="NO_GRANT",
    ),
    Case(
        "3", "granted", "doc", READ, (ALLOWED, "ACCESS_GRANTED", 0), ("grant:doc",), resource=doc()
    ),
    Case(
        "3",
        "care-context",
        "doc",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("care:doc",),
        resource=doc(),
    ),
    Case(
        "3",
        "attending",
        "doc",
        READ,
        (ALLOWED, "ATTENDING_PHYSICIAN", 0),
        ("attending:doc",),
        resource=doc(),
    ),
    Case(
        "3",
        "emergency",
        "doc",
        READ,
        (ALLOWED, "EMERGENCY_ACCESS", 0),
        ("emergency:doc",),
        resource=doc(),
        mode=P.ACCESS_MODE_BRIS_DE_GLACE,
    ),
    Case(
        "3",
        "revoked",
        "doc",
        READ,
        (DENIED, "NO_GRANT", NF),
        ("grant:doc", "revoke:doc"),
        resource=doc(),
    ),
    Case(
        "3",
        "administrative-read",
        "doc",
        ADMIN_READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:doc",),
        kind=A.RESOURCE_KIND_DOSSIER,
    ),
    # 4: the profession matrix and roles
    Case(
        "4",
        "optician-report",
        "optician",
        READ,
        (DENIED, "CLASS_NOT_READABLE", PD),
        ("grant:optician",),
        resource=doc("10"),
    ),
    Case(
        "4",
        "optician-prescription",
        "optician",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:optician",),
        resource=doc("42"),
    ),
    Case(
        "4",
        "optician-ophtalmo-type",
        "optician",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:optician",),
        resource={"document_type_code": "78513-9"},
    ),
    Case(
        "4",
        "dietitian-imaging",
        "dietitian",
        READ,
        (DENIED, "CLASS_NOT_READABLE", PD),
        ("grant:dietitian",),
        resource=doc("31"),
    ),
    Case(
        "4",
        "admin-staff-document",
        "admin",
        READ,
        (DENIED, "ADMINISTRATIVE_ONLY", PD),
        resource=doc(),
    ),
    Case(
        "4",
        "admin-staff-administrative",
        "admin",
        ADMIN_READ,
        (ALLOWED, "ADMINISTRATIVE", 0),
        kind=A.RESOURCE_KIND_DOSSIER,
    ),
    Case(
        "4",
        "desk-close",
        "desk",
        MANAGE,
        (ALLOWED, "ADMINISTRATIVE", 0),
        kind=A.RESOURCE_KIND_DOSSIER,
        method=RECORDS + "CloseDossier",
    ),
    Case("4", "desk-document", "desk", READ, (DENIED, "ADMINISTRATIVE_ONLY", PD), resource=doc()),
    Case(
        "4",
        "amo-writes-60",
        "amo",
        WRITE,
        (ALLOWED, "WRITE_RIGHT", 0),
        kind=A.RESOURCE_KIND_CARE_HISTORY,
    ),
    Case(
        "4",
        "amo-never-reads",
        "amo",
        READ,
        (DENIED, "CLASS_NOT_READABLE", PD),
        kind=A.RESOURCE_KIND_CARE_HISTORY,
    ),
    Case("4", "amo-writes-10", "amo", WRITE, (DENIED, "CLASS_NOT_WRITABLE", PD), resource=doc()),
    Case(
        "4",
        "pharmacist-health-profile",
        "pharmacist",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:pharmacist",),
        kind=A.RESOURCE_KIND_HEALTH_PROFILE,
    ),
    # 5: writing needs the write right and no block, deleting needs authorship
    Case("5", "write-without-grant", "doc", WRITE, (ALLOWED, "WRITE_RIGHT", 0), resource=doc()),
    Case(
        "5", "write-not-in-matrix", "optician", WRITE, (DENIED, "NO_GRANT", NF), resource=doc("10")
    ),
    Case(
        "5",
        "granted-write-not-in-matrix",
        "optician",
        WRITE,
        (DENIED, "CLASS_NOT_WRITABLE", PD),
        ("grant:optician",),
        resource=doc("10"),
    ),
    Case(
        "5",
        "delete-not-author",
        "doc",
        DELETE,
        (DENIED, "NOT_AUTHOR", PD),
        ("grant:doc",),
        resource=doc(author_rpps="81234567890"),
    ),
    Case(
        "5",
        "delete-author",
        "doc",
        DELETE,
        (ALLOWED, "WRITE_RIGHT", 0),
        ("grant:doc",),
        resource=doc(author_rpps="@doc"),
    ),
    # 6: confidentiality
    Case(
        "6",
        "masked-granted",
        "doc",
        READ,
        (DENIED, "DOCUMENT_MASKED", NF),
        ("grant:doc",),
        resource=doc(confidentiality_codes=["MASQUE_PS"]),
    ),
    Case(
        "6",
        "masked-attending",
        "doc",
        READ,
        (ALLOWED, "ATTENDING_PHYSICIAN", 0),
        ("attending:doc",),
        resource=doc(confidentiality_codes=["MASQUE_PS"]),
    ),
    Case(
        "6",
        "masked-author",
        "doc",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:doc",),
        resource=doc(confidentiality_codes=["MASQUE_PS"], author_rpps="@doc"),
    ),
    Case(
        "6",
        "masked-patient",
        "patient",
        READ,
        (ALLOWED, "PATIENT_SELF", 0),
        resource=doc(confidentiality_codes=["MASQUE_PS"]),
    ),
    Case(
        "6",
        "invisible-patient",
        "patient",
        READ,
        (DENIED, "DOCUMENT_HIDDEN", NF),
        resource=doc(confidentiality_codes=["INVISIBLE_PATIENT"]),
    ),
    Case(
        "6",
        "invisible-representatives",
        "rep",
        READ,
        (DENIED, "DOCUMENT_HIDDEN", NF),
        ("minor",),
        resource=doc(confidentiality_codes=["INVISIBLE_REPRESENTANTS_LEGAUX"]),
    ),
    Case(
        "6",
        "invisible-representatives-patient",
        "patient",
        READ,
        (ALLOWED, "PATIENT_SELF", 0),
        ("minor",),
        resource=doc(confidentiality_codes=["INVISIBLE_REPRESENTANTS_LEGAUX"]),
    ),
    # 7: emergencies
    Case(
        "7",
        "bdg-opposed",
        "doc",
        READ,
        (DENIED, "EMERGENCY_OPPOSED", PD),
        ("emergency:doc", "oppose:bdg"),
        resource=doc(),
    ),
    Case(
        "7",
        "c15-regulateur",
        "regul",
        READ,
        (ALLOWED, "EMERGENCY_ACCESS", 0),
        ("oppose:bdg", "emergency:regul:c15"),
        resource=doc(),
        mode=P.ACCESS_MODE_CENTRE_15,
    ),
    Case(
        "7",
        "c15-opposed",
        "regul",
        READ,
        (DENIED, "EMERGENCY_OPPOSED", PD),
        ("emergency:regul:c15", "oppose:c15"),
        resource=doc(),
    ),
    Case(
        "7",
        "emergency-masked",
        "doc",
        READ,
        (DENIED, "DOCUMENT_MASKED", NF),
        ("emergency:doc",),
        resource=doc(confidentiality_codes=["MASQUE_PS"]),
    ),
    # 9: closed record
    Case(
        "9",
        "closed-patient-read",
        "patient",
        READ,
        (DENIED, "DOSSIER_CLOSED", FP),
        ("closed",),
        resource=doc(),
    ),
    Case(
        "9",
        "closed-patient-reactivates",
        "patient",
        MANAGE,
        (ALLOWED, "PATIENT_SELF", 0),
        ("closed",),
        kind=A.RESOURCE_KIND_DOSSIER,
        method=RECORDS + "ReactivateDossier",
    ),
    Case(
        "9",
        "closed-granted-pro",
        "doc",
        READ,
        (DENIED, "DOSSIER_CLOSED", FP),
        ("grant:doc", "closed"),
        resource=doc(),
    ),
    Case(
        "9", "closed-stranger", "doc2", READ, (DENIED, "NO_GRANT", NF), ("closed",), resource=doc()
    ),
    Case(
        "9",
        "closed-desk-close",
        "desk",
        MANAGE,
        (DENIED, "DOSSIER_CLOSED", FP),
        ("closed",),
        kind=A.RESOURCE_KIND_DOSSIER,
        method=RECORDS + "CloseDossier",
    ),
    # 10: terms of use
    Case(
        "10",
        "terms-patient-read",
        "patient",
        READ,
        (DENIED, "TERMS_NOT_ACCEPTED", FP),
        ("terms",),
        resource=doc(),
    ),
    Case(
        "10",
        "terms-accept",
        "patient",
        MANAGE,
        (ALLOWED, "PATIENT_SELF", 0),
        ("terms",),
        kind=A.RESOURCE_KIND_DOSSIER,
        method=RECORDS + "AcceptTermsOfUse",
    ),
    Case(
        "10",
        "terms-pro",
        "doc",
        WRITE,
        (DENIED, "TERMS_NOT_ACCEPTED", FP),
        ("terms",),
        resource=doc(),
    ),
    # 11: minors
    Case(
        "11",
        "representative",
        "rep",
        READ,
        (ALLOWED, "LEGAL_REPRESENTATIVE", 0),
        ("minor",),
        resource=doc(),
    ),
    Case(
        "11",
        "representative-ended",
        "rep",
        READ,
        (DENIED, "REPRESENTATIVE_ACCESS_ENDED", PD),
        ("minor", "rep_ended"),
        resource=doc(),
    ),
    Case(
        "11",
        "other-patient",
        "stranger",
        READ,
        (DENIED, "NO_GRANT", NF),
        ("minor",),
        resource=doc(),
    ),
    # 12: advance directives: written by the patient side or a granted médecin (or the
    # médecin traitant), never by a write right alone nor in an emergency; read in both
    # emergency modes
    Case("12", "patient-writes", "patient", WRITE, (ALLOWED, "PATIENT_SELF", 0), kind=AD),
    Case(
        "12",
        "representative-writes",
        "rep",
        WRITE,
        (ALLOWED, "LEGAL_REPRESENTATIVE", 0),
        ("minor",),
        kind=AD,
    ),
    Case(
        "12",
        "granted-doctor-writes",
        "doc",
        WRITE,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:doc",),
        kind=AD,
    ),
    Case(
        "12",
        "attending-writes",
        "doc",
        WRITE,
        (ALLOWED, "ATTENDING_PHYSICIAN", 0),
        ("attending:doc",),
        kind=AD,
    ),
    Case(
        "12",
        "doctor-without-grant",
        "doc",
        WRITE,
        (DENIED, "NO_GRANT", NF),
        kind=AD,
        log_reason="NO_GRANT",
    ),
    Case(
        "12",
        "revoked-grant",
        "doc",
        WRITE,
        (DENIED, "NO_GRANT", NF),
        ("grant:doc", "revoke:doc"),
        kind=AD,
    ),
    Case(
        "12",
        "granted-pharmacist",
        "pharmacist",
        WRITE,
        (DENIED, "ADVANCE_DIRECTIVES_NOT_WRITABLE", PD),
        ("grant:pharmacist",),
        kind=AD,
    ),
    Case(
        "12",
        "emergency-writes",
        "doc",
        WRITE,
        (DENIED, "ADVANCE_DIRECTIVES_NOT_WRITABLE", PD),
        ("emergency:doc",),
        kind=AD,
    ),
    Case(
        "12",
        "c15-writes",
        "regul",
        WRITE,
        (DENIED, "ADVANCE_DIRECTIVES_NOT_WRITABLE", PD),
        ("emergency:regul:c15",),
        kind=AD,
    ),
    Case("12", "amo-writes", "amo", WRITE, (DENIED, "CLASS_NOT_WRITABLE", PD), kind=AD),
    Case("12", "desk-writes", "desk", WRITE, (DENIED, "ADMINISTRATIVE_ONLY", PD), kind=AD),
    Case(
        "12",
        "granted-doctor-reads",
        "doc",
        READ,
        (ALLOWED, "ACCESS_GRANTED", 0),
        ("grant:doc",),
        kind=AD,
    ),
    Case("12", "stranger-reads", "doc", READ, (DENIED, "NO_GRANT", NF), kind=AD),
    Case(
        "12",
        "bdg-reads",
        "doc",
        READ,
        (ALLOWED, "EMERGENCY_ACCESS", 0),
        ("emergency:doc",),
        kind=AD,
        mode=P.ACCESS_MODE_BRIS_DE_GLACE,
    ),
    Case(
        "12",
        "c15-reads",
        "regul",
        READ,
        (ALLOWED, "EMERGENCY_ACCESS", 0),
        ("emergency:regul:c15",),
        kind=AD,
        mode=P.ACCESS_MODE_CENTRE_15,
    ),
]


def _principals(ins: str, rep_ins: str) -> dict[str, P.Principal]:
    return {
        "patient": principals.patient(ins),
        "rep": principals.patient(rep_ins, subject="rep-account"),
        "stranger": principals.patient(new_ins()),
        "anonymous": P.Principal(kind=P.PRINCIPAL_KIND_ANONYMOUS, subject="anon"),
        "doc": pro("10", "SM26"),
        "doc2": pro("10"),
        "optician": pro("28"),
        "dietitian": pro("95"),
        "pharmacist": pro("21"),
        "sm25": pro("10", "SM25"),
        "occupational": pro("10", roles=("medecin_du_travail",)),
        "conseil": pro("10", roles=("medecin_conseil",)),
        "insurer": pro("10", roles=("assureur",)),
        "regul": pro("10", roles=("regulateur",)),
        "admin": principals.staff("staff-1", ("administratif",)),
        "desk": principals.staff("cpam-1", ("guichet_amo",)),
        "amo": principals.service(),
    }


async def _apply(h: ConsentHarness, case: Case) -> tuple[str, str, dict[str, P.Principal]]:
    ins, rep_ins = new_ins(), new_ins()
    end = datetime.now(UTC) + timedelta(days=365)
    if "rep_ended" in case.setup:
        end = datetime.now(UTC) - timedelta(days=1)
    state = records_pb2.DOSSIER_STATE_ACTIVE
    if "terms" in case.setup:
        state = records_pb2.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED
    minor = "minor" in case.setup
    dossier, _ = await h.create_record(
        ins, state=state, minor=minor, representatives=((rep_ins, end),) if minor else ()
    )
    who = _principals(ins, rep_ins)
    for step in case.setup:
        verb, _, arg = step.partition(":")
        target = who.get(arg.split(":")[0]) if arg else None
        if verb == "grant" and target is not None:
            await grant(h, dossier, ins, target.rpps)
        elif verb == "revoke" and target is not None:
            rules = await h.call(
                "ListAccessRules", C.ListAccessRulesRequest(parent=dossier), who["patient"]
            )
            rule = next(r for r in rules.access_rules if r.professional_rpps == target.rpps)
            await h.call(
                "RevokeAccess",
                C.RevokeAccessRequest(name=rule.name, request_id=rid()),
                who["patient"],
            )
        elif verb == "block" and target is not None:
            await block(h, dossier, ins, target.rpps)
        elif verb == "attending" and target is not None:
            await attending(h, dossier, ins, target.rpps)
        elif verb == "care" and target is not None:
            await h.call(
                "GrantAccess",
                C.GrantAccessRequest(
                    parent=dossier,
                    professional_rpps=target.rpps,
                    care_context=C.CareContext(consent_attested=True),
                    request_id=rid(),
                ),
                target,
            )
        elif verb == "emergency" and target is not None:
            mode = P.ACCESS_MODE_CENTRE_15 if arg.endswith("c15") else P.ACCESS_MODE_BRIS_DE_GLACE
            await emergency(h, dossier, target, mode)
        elif verb == "oppose":
            await oppose(h, dossier, ins, bdg=arg == "bdg", c15=arg == "c15")
        elif verb == "closed":
            await h.set_state(dossier, ins, records_pb2.DOSSIER_STATE_CLOSED)
    return dossier, ins, who


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_rule(consent: ConsentHarness, case: Case) -> None:
    dossier, _ins, who = await _apply(consent, case)
    principal = who[case.who]
    resource = dict(case.resource)
    if resource.get("author_rpps") == "@doc":
        resource["author_rpps"] = principal.rpps
    before = await consent.count("access_log", dossier)
    response = await consent.authorize(
        principal,
        case.action,
        dossier,
        resource_kind=case.kind,
        method=case.method or RECORDS + "GetDocument",
        **resource,
    )
    decision, reason, status = case.expect
    assert (response.decision, response.reason, response.status_code) == (
        decision,
        reason,
        status,
    )
    assert response.policy_version
    assert len(response.policy_hash) == 64
    if case.mode is not None:
        assert response.scope.mode == case.mode
    if decision == ALLOWED:
        assert C.OBLIGATION_AUDIT in response.obligations
        assert response.scope.policy_version == response.policy_version
        # Records writes advance directives only on this flag of the signed scope.
        assert response.scope.advance_directives_writable == (
            case.kind == AD and case.action == WRITE
        )
    else:
        assert not response.HasField("scope")
    # Rule 8: every decision, allowed or denied, is in the record's log.
    assert await consent.count("access_log", dossier) == before + 1
    entries = await consent.history(dossier)
    if entries:
        newest = entries[0]
        assert newest.name == response.access_log_entry
        assert newest.decision == decision
        assert newest.reason == (case.log_reason or reason)
        assert newest.policy_version == response.policy_version


async def test_absent_record_answers_like_no_grant(consent: ConsentHarness) -> None:
    """AIP-211: a stranger cannot tell an absent record from one they may not read."""
    dossier, _ = await consent.create_record()
    doctor = pro("10")
    present = await consent.authorize(doctor, READ, dossier, document_class_code="10")
    absent = await consent.authorize(
        doctor, READ, "dossiers/doesnotexist", document_class_code="10"
    )
    blocked_dossier, ins = await consent.create_record()
    await block(consent, blocked_dossier, ins, doctor.rpps)
    blocked = await consent.authorize(doctor, READ, blocked_dossier, document_class_code="10")
    answers = {(r.decision, r.reason, r.status_code) for r in (present, absent, blocked)}
    assert answers == {(DENIED, "NO_GRANT", 5)}
    assert not absent.access_log_entry
    assert not absent.dossier


async def test_rule1_missing_principal_metadata(consent: ConsentHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.stub.ListAccessRules(C.ListAccessRulesRequest(parent="dossiers/x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as internal:
        await consent.call(
            "Authorize",
            C.AuthorizeRequest(principal=principals.patient(new_ins()), action=READ),
            principals.patient(new_ins()),
        )
    assert internal.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rule7_emergency_expires(consent: ConsentHarness) -> None:
    dossier, _ = await consent.create_record()
    doctor = pro("10")
    rule = await emergency(consent, dossier, doctor, requested_duration_seconds=1)
    assert rule.expire_time.ToDatetime(UTC) - rule.create_time.ToDatetime(UTC) == timedelta(
        seconds=1
    )
    allowed = await consent.authorize(doctor, READ, dossier, document_class_code="10")
    assert allowed.decision == ALLOWED
    assert allowed.cache_expire_time.ToDatetime(UTC) <= rule.expire_time.ToDatetime(UTC)
    # 1.1 s later on the process clock consent reads (kit.clock), without waiting for it.
    with clock.use(clock.ShiftedClock(timedelta(seconds=1.1), base=clock.current())):
        expired = await consent.authorize(doctor, READ, dossier, document_class_code="10")
    assert (expired.decision, expired.reason) == (DENIED, "NO_GRANT")


async def test_rule7_default_duration_is_12h(consent: ConsentHarness) -> None:
    dossier, _ = await consent.create_record()
    rule = await emergency(consent, dossier, pro("60"))
    span = rule.expire_time.ToDatetime(UTC) - rule.create_time.ToDatetime(UTC)
    assert span == timedelta(hours=12)
    assert rule.emergency_access.justification.startswith("Patient")


async def test_rule11_representative_acts_for_patient(consent: ConsentHarness) -> None:
    rep_ins = new_ins()
    end = datetime.now(UTC) + timedelta(days=30)
    dossier, _ = await consent.create_record(minor=True, representatives=((rep_ins, end),))
    rep = principals.patient(rep_ins, subject="rep-1")
    doctor = pro("10")
    rule = await consent.call(
        "GrantAccess",
        C.GrantAccessRequest(parent=dossier, professional_rpps=doctor.rpps, request_id=rid()),
        rep,
    )
    assert rule.grant.source == C.GRANT_SOURCE_LEGAL_REPRESENTATIVE
    allowed = await consent.authorize(rep, READ, dossier, document_class_code="10")
    assert allowed.scope.legal_representative
    assert allowed.cache_expire_time.ToDatetime(UTC) <= end
