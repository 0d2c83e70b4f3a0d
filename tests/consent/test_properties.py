"""Property tests of the pure decision function (hypothesis).

Whatever sequence of grants, blocks, oppositions, attending-doctor changes and
emergencies the patient and professionals produce, a blocked professional is
never allowed and a principal with an excluded role (or specialty) never is.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import records_pb2
from kit import codes
from services.consent.decision import Request, Resource, decide
from services.consent.matrix import default_matrix
from services.consent.state import EmergencyGrant, RecordRules, RecordState

A, P = authz_pb2, principal_pb2
MATRIX = default_matrix()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
RPPS = [f"1000000000{i}" for i in range(5)]
PROFESSIONS = sorted(MATRIX.professions)
SPECIALTIES = ["", "SM25", "SM26", "SI01", "SM38"]
ROLES = [*MATRIX.roles, "assureur"]
EXCLUDED = {name for name, row in MATRIX.roles.items() if row.excluded}
ACTIONS = [v for v in A.Action.values() if v]
KINDS = [v for v in A.ResourceKind.values() if v]
CLASSES = ["", *sorted(codes.table("document_classes"))]
STATES = [
    records_pb2.DOSSIER_STATE_ACTIVE,
    records_pb2.DOSSIER_STATE_CLOSED,
    records_pb2.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED,
]
RECORD = RecordState("dossiers/d1", "185057500000184", records_pb2.DOSSIER_STATE_ACTIVE)

ops = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["grant", "revoke", "block", "unblock", "attending"]),
            st.sampled_from(RPPS),
        ),
        st.tuples(st.just("oppose"), st.tuples(st.booleans(), st.booleans())),
        st.tuples(
            st.just("emergency"),
            st.tuples(
                st.sampled_from(RPPS),
                st.sampled_from([P.ACCESS_MODE_BRIS_DE_GLACE, P.ACCESS_MODE_CENTRE_15]),
            ),
        ),
        st.tuples(st.just("access"), st.sampled_from(RPPS)),
    ),
    max_size=15,
)


def apply(operations: list[tuple[str, object]]) -> RecordRules:
    """The rules the service would hold after these choices (the RPCs' own preconditions)."""
    rules = RecordRules()
    for verb, arg in operations:
        if verb == "grant" and arg not in rules.blocks:
            rules = replace(rules, grants={**rules.grants, str(arg): None})
        elif verb == "revoke":
            rules = replace(rules, grants={k: v for k, v in rules.grants.items() if k != arg})
        elif verb == "block" and arg != rules.attending:
            rules = replace(
                rules,
                blocks=rules.blocks | {str(arg)},
                grants={k: v for k, v in rules.grants.items() if k != arg},
                emergencies={k: v for k, v in rules.emergencies.items() if k != arg},
            )
        elif verb == "unblock":
            rules = replace(rules, blocks=rules.blocks - {str(arg)})
        elif verb == "attending" and arg not in rules.blocks:
            rules = replace(rules, attending=str(arg))
        elif verb == "oppose":
            bdg, c15 = arg  # type: ignore[misc]
            rules = replace(rules, oppose_bris_de_glace=bdg, oppose_centre_15=c15)
        elif verb == "emergency":
            rpps, mode = arg  # type: ignore[misc]
            grant = EmergencyGrant("r", mode, NOW + timedelta(hours=1))
            rules = replace(rules, emergencies={**rules.emergencies, rpps: grant})
        elif verb == "access":
            rules = replace(rules, accessed=rules.accessed | {str(arg)})
    return rules


def raw_apply_any(operations: list[tuple[str, object]]) -> RecordRules:
    """Adversarial: rules built without the RPC preconditions (blocks still win)."""
    rules = apply(operations)
    extra = {r: None for r in rules.blocks}
    return replace(rules, grants={**rules.grants, **extra})


principals_st = st.builds(
    lambda rpps, prof, spec, roles: P.Principal(
        kind=P.PRINCIPAL_KIND_PROFESSIONAL,
        subject=rpps,
        rpps=rpps,
        profession_code=prof,
        specialty_code=spec,
        roles=roles,
    ),
    st.sampled_from(RPPS),
    st.sampled_from(PROFESSIONS),
    st.sampled_from(SPECIALTIES),
    st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
)
requests_st = st.builds(
    lambda p, action, kind, cls, masked, mode: Request(
        principal=p,
        action=action,
        resource_kind=kind,
        method="/dmp.records.v1.RecordsService/GetDocument",
        resource=Resource(class_code=cls, confidentiality=frozenset(masked)),
        emergency_mode=mode,
    ),
    principals_st,
    st.sampled_from(ACTIONS),
    st.sampled_from(KINDS),
    st.sampled_from(CLASSES),
    st.lists(st.sampled_from(["MASQUE_PS", "INVISIBLE_PATIENT"]), max_size=1),
    st.sampled_from([0, P.ACCESS_MODE_BRIS_DE_GLACE, P.ACCESS_MODE_CENTRE_15]),
)


@settings(max_examples=150, deadline=None)
@given(operations=ops, req=requests_st, state=st.sampled_from(STATES), adversarial=st.booleans())
def test_blocked_professional_never_allowed(
    operations: list[tuple[str, object]], req: Request, state: int, adversarial: bool
) -> None:
    rules = raw_apply_any(operations) if adversarial else apply(operations)
    record = replace(RECORD, state=state)
    decision = decide(MATRIX, req, record, rules, NOW)
    assert decision == decide(MATRIX, req, record, rules, NOW)  # deterministic
    # The existence test is decided on the profession alone (before and without the record):
    # a blocked professional learns that the record exists and that nothing opens for them
    # (services/consent/existence.py); every access stays refused.
    if req.principal.rpps in rules.blocks and req.action != A.ACTION_CHECK_EXISTENCE:
        assert not decision.allowed
        assert decision.status_code != 0


@settings(max_examples=150, deadline=None)
@given(
    operations=ops,
    req=requests_st,
    excluded=st.sampled_from(sorted(EXCLUDED)),
    kind=st.sampled_from(
        [
            P.PRINCIPAL_KIND_PROFESSIONAL,
            P.PRINCIPAL_KIND_STAFF,
            P.PRINCIPAL_KIND_SERVICE,
            P.PRINCIPAL_KIND_PATIENT,
        ]
    ),
)
def test_excluded_role_never_allowed(
    operations: list[tuple[str, object]], req: Request, excluded: str, kind: int
) -> None:
    principal = P.Principal()
    principal.CopyFrom(req.principal)
    principal.kind = kind  # type: ignore[assignment]
    principal.patient_ins = RECORD.patient_ins  # even the record's own INS does not help
    principal.roles.append(excluded)
    decision = decide(MATRIX, replace(req, principal=principal), RECORD, apply(operations), NOW)
    assert not decision.allowed
    assert decision.reason == "ROLE_EXCLUDED"


@settings(max_examples=100, deadline=None)
@given(operations=ops, req=requests_st)
def test_occupational_medicine_specialty_never_allowed(
    operations: list[tuple[str, object]], req: Request
) -> None:
    principal = P.Principal()
    principal.CopyFrom(req.principal)
    principal.profession_code = "10"
    principal.specialty_code = "SM25"
    del principal.roles[:]
    decision = decide(MATRIX, replace(req, principal=principal), RECORD, apply(operations), NOW)
    assert not decision.allowed


@settings(max_examples=150, deadline=None)
@given(operations=ops, req=requests_st)
def test_allowed_reads_stay_inside_the_matrix(
    operations: list[tuple[str, object]], req: Request
) -> None:
    decision = decide(MATRIX, req, RECORD, apply(operations), NOW)
    p = req.principal
    if decision.allowed and req.action == A.ACTION_READ and req.resource.class_code:
        rights = MATRIX.profession_rights(p.profession_code, p.specialty_code)
        assert rights is not None
        assert rights.can_read(req.resource.class_code)
        if "MASQUE_PS" in req.resource.confidentiality:
            assert decision.reason == "ATTENDING_PHYSICIAN"
    if decision.allowed and decision.mode in (P.ACCESS_MODE_BRIS_DE_GLACE, P.ACCESS_MODE_CENTRE_15):
        assert consent_pb2.OBLIGATION_NOTIFY_EMERGENCY in decision.obligations
