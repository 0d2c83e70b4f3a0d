"""Decide once, log once, alert once: attacks on what the edge decides, through the
launcher-started gateway with real cards and tokens.

Each test names the finding of the edge security review it closes (commit 0f630cb's
behaviour fails it):
- 2: account-level methods (Logout, ChangePassword) name no record and were NOT_FOUND;
- 3: staff and service cards learned whether a record exists (the existence table below);
- 4 → tests/gateway/test_write_answers.py;
- 7: the AMO feeder could not deposit the reimbursement history (REMB, class 60);
- 8: an INS name was allowed and alerted at the edge, then refused by consent;
- 9: a read refused by records was logged as an access (and alerted as a first access);
- 10: a grant to an excluded profession was accepted and listed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from kit.errors import error_info
from tests.e2e.helpers import (
    bearer,
    consent,
    eventually,
    expect,
    grant,
    new_record,
    one_time_code,
    patient_md,
    records,
    rid,
    rpps,
    upload,
)
from tests.fixtures.records import make_ins
from tests.history.cda_sample import SAMPLE, SAMPLE_INS

R = records_pb2
C = consent_pb2
ID = identity_pb2
P = principal_pb2
S = grpc.StatusCode
PASSWORD = "Correct-Horse-42-battery"
JUSTIFICATION = "Patient inconscient aux urgences, antécédents inconnus."


async def _signed_up_patient(stack: LiveStack) -> tuple[str, str, str]:
    """A real account and session: (ins, e-mail, access token)."""
    ins = make_ins()
    email = f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk.IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
        ),
        timeout=15,
    )
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=PASSWORD), timeout=15
    )
    code = await one_time_code(stack.mail_dir, email)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    return ins, email, verified.tokens.access_token


# ---------------------------------------------------------------- finding 2


async def test_patient_changes_password_and_logs_out_through_the_gateway(
    stack: LiveStack,
) -> None:
    _, _, token = await _signed_up_patient(stack)
    identity = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    changed = await identity.ChangePassword(
        ID.ChangePasswordRequest(
            request_id=rid(), current_password=PASSWORD, new_password=PASSWORD + "-2"
        ),
        metadata=bearer(token),
        timeout=15,
    )
    assert changed.account.startswith("accounts/")
    out = await identity.Logout(
        ID.LogoutRequest(request_id=rid()), metadata=bearer(token), timeout=10
    )
    assert out.session.startswith(changed.account + "/sessions/")


async def test_account_methods_are_refused_to_cards(stack: LiveStack) -> None:
    for card in ("doctor", "desk", "amo", "support"):
        identity = identity_pb2_grpc.IdentityServiceStub(stack.card_channel(card))
        await expect(
            identity.Logout(ID.LogoutRequest(request_id=rid()), timeout=10),
            S.PERMISSION_DENIED,
            "ACTION_NOT_ALLOWED",
        )


# ---------------------------------------------------------------- finding 3: the table


@dataclass(frozen=True)
class Target:
    dossier: str
    document: str
    ins: str


def _outcome(err: BaseException | None) -> tuple[str, str]:
    if err is None:
        return ("OK", "")
    assert isinstance(err, grpc.aio.AioRpcError), err
    info = error_info(err)
    return (err.code().name, info.reason if info is not None else "")


Call = Callable[[LiveStack, str, Target], Awaitable[Any]]


def _records_stub(stack: LiveStack, caller: str) -> Any:
    return records(_channel(stack, caller))


def _consent_stub(stack: LiveStack, caller: str) -> Any:
    return consent(_channel(stack, caller))


def _channel(stack: LiveStack, caller: str) -> grpc.aio.Channel:
    return stack.patient_channel() if caller == "other_patient" else stack.card_channel(caller)


def _md(stack: LiveStack, caller: str) -> Any:
    return patient_md(stack, OTHER_PATIENT[0]) if caller == "other_patient" else None


OTHER_PATIENT: list[str] = []

FAMILIES: dict[str, Call] = {
    "GetDossier": lambda s, c, t: _records_stub(s, c).GetDossier(
        R.GetDossierRequest(name=t.dossier), metadata=_md(s, c), timeout=10
    ),
    "GetDossier by INS": lambda s, c, t: _records_stub(s, c).GetDossier(
        R.GetDossierRequest(name=f"patients/{t.ins}/dossier"), metadata=_md(s, c), timeout=10
    ),
    "GetDocument": lambda s, c, t: _records_stub(s, c).GetDocument(
        R.GetDocumentRequest(name=t.document), metadata=_md(s, c), timeout=10
    ),
    "ListDocuments": lambda s, c, t: _records_stub(s, c).ListDocuments(
        R.ListDocumentsRequest(parent=t.dossier), metadata=_md(s, c), timeout=10
    ),
    "GetHealthProfile": lambda s, c, t: _records_stub(s, c).GetHealthProfile(
        R.GetHealthProfileRequest(name=f"{t.dossier}/healthProfile"), metadata=_md(s, c), timeout=10
    ),
    "DeleteDocument": lambda s, c, t: _records_stub(s, c).DeleteDocument(
        R.DeleteDocumentRequest(name=t.document, request_id=rid()), metadata=_md(s, c), timeout=10
    ),
    "CloseDossier": lambda s, c, t: _records_stub(s, c).CloseDossier(
        R.CloseDossierRequest(name=t.dossier, request_id=rid()), metadata=_md(s, c), timeout=10
    ),
    "ListAccessHistory": lambda s, c, t: _consent_stub(s, c).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=t.dossier), metadata=_md(s, c), timeout=10
    ),
    "ListAccessRules": lambda s, c, t: _consent_stub(s, c).ListAccessRules(
        C.ListAccessRulesRequest(parent=t.dossier), metadata=_md(s, c), timeout=10
    ),
    "BlockProfessional": lambda s, c, t: _consent_stub(s, c).BlockProfessional(
        C.BlockProfessionalRequest(
            parent=t.dossier, professional_rpps=rpps("optician"), request_id=rid()
        ),
        metadata=_md(s, c),
        timeout=10,
    ),
    # The existence test by INS (issue 15): standing is the profession, never the record.
    "CheckDossierExistence": lambda s, c, t: _consent_stub(s, c).CheckDossierExistence(
        C.CheckDossierExistenceRequest(name=f"patients/{t.ins}/dossier"),
        metadata=_md(s, c),
        timeout=10,
    ),
    "StartEmergencyAccess": lambda s, c, t: _consent_stub(s, c).StartEmergencyAccess(
        C.StartEmergencyAccessRequest(
            parent=t.dossier,
            mode=P.ACCESS_MODE_BRIS_DE_GLACE,
            reason=C.EMERGENCY_REASON_PATIENT_UNABLE_TO_CONSENT,
            justification=JUSTIFICATION,
            request_id=rid(),
        ),
        metadata=_md(s, c),
        timeout=10,
    ),
}

# Caller kind → the method families where it has no standing on a record it was not given:
# the answer must not depend on whether the record (or document) exists. A professional's
# writes (rule 5), existence test and emergency access are standing by design and are left
# out for professionals; the CPAM desk's administrative part likewise.
NO_STANDING: dict[str, tuple[str, ...]] = {
    "other_patient": tuple(FAMILIES),
    "doctor": (
        "GetDossier",
        "GetDocument",
        "ListDocuments",
        "GetHealthProfile",
        "CloseDossier",
        "ListAccessHistory",
        "ListAccessRules",
        "BlockProfessional",
    ),
    "optician": (
        "GetDossier",
        "GetDocument",
        "ListDocuments",
        "GetHealthProfile",
        "CloseDossier",
        "ListAccessHistory",
        "ListAccessRules",
        "BlockProfessional",
    ),
    "occupational": tuple(FAMILIES),
    "amo": tuple(FAMILIES),
    "admin": tuple(f for f in FAMILIES if f not in ("GetDossier", "GetDossier by INS")),
    "desk": tuple(
        f for f in FAMILIES if f not in ("GetDossier", "GetDossier by INS", "CloseDossier")
    ),
    # DMP Info Service: reissues activation paths (its own test), never reads anything.
    "support": tuple(FAMILIES),
}
CELLS = [(caller, family) for caller, families in NO_STANDING.items() for family in families]


@pytest.fixture(scope="module")
def existence_targets() -> dict[str, Target]:
    return {}


async def _targets(stack: LiveStack, cache: dict[str, Target]) -> dict[str, Target]:
    if not cache:
        dossier, ins = await new_record(stack)
        report = await upload(stack, "doctor2", dossier)
        other, other_ins = await new_record(stack)
        OTHER_PATIENT[:] = [other_ins]
        assert other
        missing_dossier = f"dossiers/{uuid.uuid4().hex}"
        cache["exists"] = Target(dossier, report.name, ins)
        cache["missing document"] = Target(dossier, f"{dossier}/documents/{uuid.uuid4().hex}", ins)
        cache["missing record"] = Target(
            missing_dossier, f"{missing_dossier}/documents/{uuid.uuid4().hex}", make_ins()
        )
    return cache


@pytest.mark.parametrize(("caller", "family"), CELLS, ids=[f"{c}-{f}" for c, f in CELLS])
async def test_existence_table(
    stack: LiveStack, existence_targets: dict[str, Target], caller: str, family: str
) -> None:
    """One answer whether the record (or the document) exists or not (AIP-211)."""
    targets = await _targets(stack, existence_targets)
    outcomes: dict[str, tuple[str, str]] = {}
    for label, target in targets.items():
        try:
            await FAMILIES[family](stack, caller, target)
            outcomes[label] = _outcome(None)
        except grpc.aio.AioRpcError as err:
            outcomes[label] = _outcome(err)
    assert len(set(outcomes.values())) == 1, outcomes
    assert outcomes["exists"][0] != "OK", outcomes


# ---------------------------------------------------------------- finding 7


async def test_amo_feeder_deposits_the_reimbursement_history(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    document = R.Document(
        title="Historique des remboursements",
        type_code="REMB",
        # The sample written about this record's patient: a CDA naming someone else is
        # refused CDA_PATIENT_MISMATCH (issue 15, tests/e2e/test_cda_upload.py).
        content=SAMPLE.read_bytes().replace(SAMPLE_INS.encode(), ins.encode()),
        format=R.DOCUMENT_FORMAT_CDA_XML,
    )
    amo = records(stack.card_channel("amo"))
    created = await amo.CreateDocument(
        R.CreateDocumentRequest(parent=dossier, document=document, request_id=rid()), timeout=15
    )
    assert created.name.startswith(dossier + "/documents/")
    # The insurer writes the history but never reads a record.
    await expect(
        amo.GetDocument(R.GetDocumentRequest(name=created.name), timeout=10), S.PERMISSION_DENIED
    )
    # The patient sees it.
    patient = records(stack.patient_channel())
    got = await patient.GetDocument(
        R.GetDocumentRequest(name=created.name), metadata=patient_md(stack, ins), timeout=10
    )
    assert got.class_code == "60"
    # Nobody else deposits class 60: staff on capability, a doctor without standing as if
    # the record did not exist.
    for card, code in (
        ("admin", S.PERMISSION_DENIED),
        ("desk", S.PERMISSION_DENIED),
        ("doctor", S.NOT_FOUND),
    ):
        await expect(
            records(stack.card_channel(card)).CreateDocument(
                R.CreateDocumentRequest(parent=dossier, document=document, request_id=rid()),
                timeout=15,
            ),
            code,
        )


# ---------------------------------------------------------------- finding 8


async def _history(stack: LiveStack, dossier: str, ins: str) -> list[C.AccessLogEntry]:
    reply = await consent(stack.patient_channel()).ListAccessHistory(
        C.ListAccessHistoryRequest(parent=dossier, page_size=100),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    return list(reply.entries)


def _emergency_request(parent: str) -> C.StartEmergencyAccessRequest:
    return C.StartEmergencyAccessRequest(
        parent=parent,
        mode=P.ACCESS_MODE_BRIS_DE_GLACE,
        reason=C.EMERGENCY_REASON_PATIENT_UNABLE_TO_CONSENT,
        justification=JUSTIFICATION,
        request_id=rid(),
    )


async def test_emergency_access_by_ins_is_decided_logged_and_alerted_once(
    stack: LiveStack,
) -> None:
    dossier, ins = await new_record(stack)
    doctor = consent(stack.card_channel("doctor2"))
    rule = await doctor.StartEmergencyAccess(
        _emergency_request(f"patients/{ins}/dossier"), timeout=10
    )
    assert rule.name.startswith(dossier + "/accessRules/")
    entries = [
        e for e in await _history(stack, dossier, ins) if e.principal.rpps == rpps("doctor2")
    ]
    assert [(e.method.rpartition("/")[2], e.decision) for e in entries] == [
        ("StartEmergencyAccess", C.DECISION_ALLOWED)
    ]
    # The emergency is open: the doctor reads.
    listed = await records(stack.card_channel("doctor2")).ListDocuments(
        R.ListDocumentsRequest(parent=dossier), timeout=10
    )
    assert listed is not None


async def test_emergency_access_by_unknown_or_malformed_ins(stack: LiveStack) -> None:
    good = make_ins()
    wrong_key = f"{good[:13]}{int(good[13:]) % 97 + 1:02d}"
    doctor = consent(stack.card_channel("doctor2"))
    await expect(
        doctor.StartEmergencyAccess(
            _emergency_request(f"patients/{make_ins()}/dossier"), timeout=10
        ),
        S.NOT_FOUND,
    )
    await expect(
        doctor.StartEmergencyAccess(
            _emergency_request(f"patients/{wrong_key}/dossier"), timeout=10
        ),
        S.INVALID_ARGUMENT,
        "INS_KEY_MISMATCH",
    )


async def test_opposed_emergency_by_ins_is_one_refused_entry(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    await consent(stack.patient_channel()).SetEmergencyPreferences(
        C.SetEmergencyPreferencesRequest(
            name=dossier,
            preferences=C.EmergencyPreferences(oppose_bris_de_glace=True),
            request_id=rid(),
        ),
        metadata=patient_md(stack, ins),
        timeout=10,
    )
    doctor = consent(stack.card_channel("doctor2"))
    await eventually(
        lambda: expect(
            doctor.StartEmergencyAccess(_emergency_request(f"patients/{ins}/dossier"), timeout=10),
            S.PERMISSION_DENIED,
            "EMERGENCY_OPPOSED",
        ),
        retry_on=(),
    )
    entries = [
        e for e in await _history(stack, dossier, ins) if e.principal.rpps == rpps("doctor2")
    ]
    assert [e.decision for e in entries] == [C.DECISION_DENIED]


async def test_attested_consent_grant_by_ins(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    doctor = consent(stack.card_channel("doctor2"))
    rule = await doctor.GrantAccess(
        C.GrantAccessRequest(
            parent=f"patients/{ins}/dossier",
            professional_rpps=rpps("doctor2"),
            care_context=C.CareContext(consent_attested=True),
            request_id=rid(),
        ),
        timeout=10,
    )
    assert rule.name.startswith(dossier + "/accessRules/")
    entries = [
        e for e in await _history(stack, dossier, ins) if e.principal.rpps == rpps("doctor2")
    ]
    assert [(e.method.rpartition("/")[2], e.decision) for e in entries] == [
        ("GrantAccess", C.DECISION_ALLOWED)
    ]


# ---------------------------------------------------------------- finding 9


async def test_refused_read_is_logged_as_refused_and_not_as_an_access(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    report = await upload(stack, "doctor", dossier)  # a report: class 11, not an optician's
    await grant(stack, dossier, ins, "optician")
    optician = records(stack.card_channel("optician"))
    await expect(
        optician.GetDocument(R.GetDocumentRequest(name=report.name), timeout=10), S.NOT_FOUND
    )
    entries = [
        e for e in await _history(stack, dossier, ins) if e.principal.rpps == rpps("optician")
    ]
    assert [(e.resource, e.decision) for e in entries] == [(report.name, C.DECISION_DENIED)]


# ---------------------------------------------------------------- finding 10 (grants)


async def test_grant_to_an_excluded_role_is_refused(stack: LiveStack) -> None:
    dossier, ins = await new_record(stack)
    patient = consent(stack.patient_channel())
    await expect(
        patient.GrantAccess(
            C.GrantAccessRequest(
                parent=dossier, professional_rpps=rpps("occupational"), request_id=rid()
            ),
            metadata=patient_md(stack, ins),
            timeout=10,
        ),
        S.FAILED_PRECONDITION,
        "GRANTEE_EXCLUDED",
    )
    rules = await patient.ListAccessRules(
        C.ListAccessRulesRequest(parent=dossier), metadata=patient_md(stack, ins), timeout=10
    )
    assert all(r.professional_rpps != rpps("occupational") for r in rules.access_rules)


# ---------------------------------------------------------------- sibling: principal replay


async def test_a_principal_decided_for_one_record_opens_no_other(stack: LiveStack) -> None:
    """A signed principal read on the platform's network (service traffic is plaintext inside
    the cluster) is bound to the record consent decided on: records refuses it for another."""
    mine, _ = await new_record(stack)
    theirs, _ = await new_record(stack)
    method = "/dmp.records.v1.RecordsService/GetDossier"
    # What the gateway forwards for a granted doctor: records trusts the scope consent stamped,
    # for whichever record the request names; the binding is what ties it to `mine`.
    captured = principal_pb2.Principal(
        kind=P.PRINCIPAL_KIND_PROFESSIONAL,
        subject=rpps("doctor"),
        rpps=rpps("doctor"),
        profession_code="10",
        scope=P.Scope(mode=P.ACCESS_MODE_NORMAL, readable_class_codes=["11"]),
        binding=P.Binding(dossier=mine),
    )
    direct = records(grpc.aio.insecure_channel(stack.target("records")))
    got = await direct.GetDossier(
        R.GetDossierRequest(name=mine), metadata=stack.signed(captured, method), timeout=10
    )
    assert got.name == mine
    await expect(
        direct.GetDossier(
            R.GetDossierRequest(name=theirs), metadata=stack.signed(captured, method), timeout=10
        ),
        S.PERMISSION_DENIED,
        "PRINCIPAL_WRONG_RECORD",
    )
    await expect(
        direct.GetDossier(
            R.GetDossierRequest(name=f"patients/{make_ins()}/dossier"),
            metadata=stack.signed(captured, method),
            timeout=10,
        ),
        S.PERMISSION_DENIED,
        "PRINCIPAL_WRONG_RECORD",
    )
