"""The decision function: the access rules 1–11 (docs/ARCHITECTURE.md) as one pure function.

Pure and deterministic: the same principal, action, record snapshot, rules,
matrix and instant always give the same answer, which is what makes the
table-driven and property tests meaningful. No I/O: the servicer gathers the
inputs from its caches and writes the access-log entry.

AIP-211: a caller without standing on a record (absent record, no grant,
blocked) gets NO_GRANT with status NOT_FOUND whatever the cause; the precise
reason goes to the access log only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit import codes
from services.consent.matrix import Matrix, Rights, RoleRow
from services.consent.state import CLOSED, TERMS_REQUIRED, RecordRules, RecordState

OK, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED = 0, 5, 7, 9, 16

P = principal_pb2
A = authz_pb2
NORMAL = P.ACCESS_MODE_NORMAL
BRIS_DE_GLACE = P.ACCESS_MODE_BRIS_DE_GLACE
CENTRE_15 = P.ACCESS_MODE_CENTRE_15
EMERGENCY_MODES = (BRIS_DE_GLACE, CENTRE_15)

OB_AUDIT = consent_pb2.OBLIGATION_AUDIT
OB_FIRST = consent_pb2.OBLIGATION_NOTIFY_FIRST_ACCESS
#: A deposit, a correction or a deletion is audited but is not the professional's first
#: *access*: the patient hears of it through the document notice itself, and learns of the
#: professional's first consultation when they first read (one e-mail per event, never two).
WRITE_OBLIGATIONS: tuple[int, ...] = (OB_AUDIT,)
OB_EMERGENCY = consent_pb2.OBLIGATION_NOTIFY_EMERGENCY
OB_CARE_CONTEXT = consent_pb2.OBLIGATION_NOTIFY_CARE_CONTEXT_GRANT

MASKED = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"

# Lifecycle methods of records, told apart by name (they share ACTION_MANAGE_RECORD).
CREATE_DOSSIER = "CreateDossier"
REACTIVATE_DOSSIER = "ReactivateDossier"
ACCEPT_TERMS = "AcceptTermsOfUse"
CLOSE_DOSSIER = "CloseDossier"
GRANT_ACCESS = "GrantAccess"
#: Reason of an existence test (logged; the answer itself says what is open).
EXISTENCE_TEST = "EXISTENCE_TEST"

_CONTENT_ACTIONS = (A.ACTION_READ, A.ACTION_WRITE, A.ACTION_DELETE)


class InvalidPrincipalError(ValueError):
    """The principal carries a code no table knows: bad input, not a decision."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Resource:
    """Attributes of the targeted resource (empty for lists and record-level calls)."""

    name: str = ""
    class_code: str = ""
    type_code: str = ""
    confidentiality: frozenset[str] = frozenset()
    author_rpps: str = ""
    author_subject: str = ""
    #: The owning service holds no such resource (a name that names nothing).
    absent: bool = False
    #: Deleted by its author, who alone still sees it.
    deleted: bool = False


NO_RESOURCE = Resource()


@dataclass(frozen=True)
class Request:
    principal: principal_pb2.Principal
    action: int
    resource_kind: int = A.RESOURCE_KIND_UNSPECIFIED
    method: str = ""
    resource: Resource = NO_RESOURCE
    #: StartEmergencyAccess: the requested mode (the gateway does not know it).
    emergency_mode: int = P.ACCESS_MODE_UNSPECIFIED
    #: GrantAccess by a professional attesting the patient's consent during care.
    care_context: bool = False
    #: CreateDossier: the INS the call names (record_field `dossier.patient_ins`).
    patient_ins: str = ""
    #: Whether the call names a record at all (a dossier or a patient's INS): account-level
    #: methods name none and act on the caller's own account.
    names_record: bool = True

    @property
    def method_name(self) -> str:
        return self.method.rpartition("/")[2]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # precise, written to the access log
    public_reason: str  # answered to the caller (AIP-211 folding)
    status_code: int
    mode: int = P.ACCESS_MODE_UNSPECIFIED
    scope: principal_pb2.Scope | None = None
    obligations: tuple[int, ...] = ()
    first_access: bool = False
    cache_until: datetime | None = None  # earliest end of what the decision relied on
    #: Rule id of the EMERGENCY_ACCESS rule an emergency-mode access relies on (its session).
    emergency_rule: str = ""

    @property
    def emergency(self) -> bool:
        return self.allowed and self.mode in EMERGENCY_MODES


def _deny(reason: str, status: int, mode: int = P.ACCESS_MODE_UNSPECIFIED) -> Decision:
    return Decision(False, reason, reason, status, mode)


def _hidden(reason: str) -> Decision:
    """Denial that must not tell a caller without standing whether the record exists."""
    return Decision(False, reason, "NO_GRANT", NOT_FOUND)


def validate_principal(matrix: Matrix, principal: principal_pb2.Principal) -> None:
    """Raise InvalidPrincipalError for codes absent from the tables (bad input, nothing logged)."""
    if principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        if principal.profession_code not in matrix.professions:
            raise InvalidPrincipalError("PROFESSION_UNKNOWN", "Unknown profession code.")
        if principal.specialty_code and not codes.is_valid("specialties", principal.specialty_code):
            raise InvalidPrincipalError("SPECIALTY_UNKNOWN", "Unknown specialty code.")


def _scope(
    matrix: Matrix,
    mode: int,
    rights: Rights,
    *,
    masked_visible: bool = False,
    administrative_only: bool = False,
    legal_representative: bool = False,
    directives_writable: bool = False,
) -> principal_pb2.Scope:
    return P.Scope(
        mode=cast(Any, mode),
        readable_class_codes=rights.read_sorted,
        readable_type_codes=rights.read_types_sorted,
        writable_class_codes=rights.write_sorted,
        writable_type_codes=rights.write_types_sorted,
        masked_visible=masked_visible,
        administrative_only=administrative_only,
        legal_representative=legal_representative,
        policy_version=matrix.version,
        advance_directives_writable=directives_writable,
    )


def _class_of(matrix: Matrix, req: Request) -> str:
    res = req.resource
    class_code = res.class_code
    if not class_code and res.type_code:
        class_code = (
            codes.document_class_of(res.type_code)
            if codes.is_valid("document_types", res.type_code)
            else ""
        )
    return matrix.class_of(req.resource_kind, class_code)


def _unreadable(req: Request, mode: int = P.ACCESS_MODE_UNSPECIFIED) -> Decision:
    """A class the caller may not read. A named document of that class is NOT_FOUND, as
    records answers for it (AIP-211); a record-level read (profile, list) says why."""
    if req.resource_kind == A.RESOURCE_KIND_DOCUMENT and req.resource.name:
        return Decision(False, "CLASS_NOT_READABLE", "NOT_FOUND", NOT_FOUND, mode)
    return _deny("CLASS_NOT_READABLE", PERMISSION_DENIED, mode)


def _allow(
    reason: str,
    mode: int,
    scope: principal_pb2.Scope,
    obligations: tuple[int, ...] = (OB_AUDIT,),
    *,
    first_access: bool = False,
    cache_until: datetime | None = None,
    emergency_rule: str = "",
) -> Decision:
    return Decision(
        True,
        reason,
        reason,
        OK,
        mode,
        scope,
        obligations,
        first_access,
        cache_until,
        emergency_rule=emergency_rule,
    )


def decide(
    matrix: Matrix,
    req: Request,
    record: RecordState | None,
    rules: RecordRules,
    now: datetime,
) -> Decision:
    """Allow or deny `req` on `record` under `rules` at `now` (see module docstring)."""
    p = req.principal
    kind = p.kind
    if kind in (P.PRINCIPAL_KIND_UNSPECIFIED, P.PRINCIPAL_KIND_ANONYMOUS):
        return _deny("UNAUTHENTICATED", UNAUTHENTICATED)
    if kind == P.PRINCIPAL_KIND_INTERNAL:
        return _deny("PRINCIPAL_KIND_NOT_ALLOWED", PERMISSION_DENIED)
    validate_principal(matrix, p)
    role_rows: list[RoleRow] = []
    unknown_role = False
    for role in p.roles:
        row = matrix.roles.get(role)
        if row is None:
            unknown_role = True
        elif row.excluded:  # excluded wins over everything, whatever else is held
            return _deny("ROLE_EXCLUDED", PERMISSION_DENIED)
        else:
            role_rows.append(row)
    if unknown_role:
        return _deny("ROLE_UNKNOWN", PERMISSION_DENIED)
    if req.action == A.ACTION_CHECK_EXISTENCE:
        return _existence_test(matrix, req)
    if req.action == A.ACTION_COUNT_CREATIONS:
        return _creation_counts(matrix, req, role_rows)
    if req.action == A.ACTION_READ_DIRECTORY and record is None:
        return _directory(matrix, req)
    if req.action == A.ACTION_MANAGE_ACCOUNT and not req.names_record:
        return _own_account(matrix, req)
    decision = _decide_kind(matrix, req, record, rules, now, role_rows)
    if decision.allowed and req.resource.absent:
        # A name that names nothing is never allowed; standing or not was decided above, so a
        # caller without it got the same answer as for a resource that exists.
        return _hidden("RESOURCE_ABSENT")
    return decision


def _decide_kind(  # noqa: PLR0917 - the inputs of `decide`, passed on
    matrix: Matrix,
    req: Request,
    record: RecordState | None,
    rules: RecordRules,
    now: datetime,
    role_rows: list[RoleRow],
) -> Decision:
    p = req.principal
    kind = p.kind
    if kind == P.PRINCIPAL_KIND_PATIENT:
        return _patient(matrix, req, record, now)
    if kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        rights = matrix.profession_rights(p.profession_code, p.specialty_code)
        if rights is None:
            return _deny("PROFESSION_EXCLUDED", PERMISSION_DENIED)
        regulateur = any(r.emergency_mode == CENTRE_15 for r in role_rows)
        return _professional(matrix, req, record, rules, now, rights=rights, regulateur=regulateur)
    if not role_rows:
        return _deny("ROLE_REQUIRED", PERMISSION_DENIED)
    return _staff_or_service(matrix, req, record, role_rows, now)


def _existence_test(matrix: Matrix, req: Request) -> Decision:
    """The existence test by INS: standing comes from the profession alone (one that may use a
    record), decided before and without the record, so every other caller gets the same
    refusal whether the record exists or not. What is open or openable on the record is the
    handler's answer (`existence.py`), not part of this decision."""
    p = req.principal
    if p.kind != P.PRINCIPAL_KIND_PROFESSIONAL:
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    rights = matrix.profession_rights(p.profession_code, p.specialty_code)
    if rights is None:
        return _deny("PROFESSION_EXCLUDED", PERMISSION_DENIED)
    if not (rights.reads_anything or rights.writes_anything):
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    return Decision(
        True,
        EXISTENCE_TEST,
        EXISTENCE_TEST,
        OK,
        P.ACCESS_MODE_UNSPECIFIED,
        _scope(matrix, P.ACCESS_MODE_UNSPECIFIED, Rights.of()),
        (OB_AUDIT,),
    )


def _creation_counts(matrix: Matrix, req: Request, rows: list[RoleRow]) -> Decision:
    """Records created per professional and per institution: the insurer's agents (a role
    that manages records, the CPAM desk) only. No record is named: nothing to hide."""
    if req.principal.kind == P.PRINCIPAL_KIND_STAFF and any(r.manage_record for r in rows):
        return _allow("INSURER_COUNT", NORMAL, _scope(matrix, NORMAL, Rights.of()))
    return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)


def _own_account(matrix: Matrix, req: Request) -> Decision:
    """Logout, password change: the identity service acts on the caller's own account and
    session (the request names no other), so a patient may; nobody else has an account."""
    if req.principal.kind == P.PRINCIPAL_KIND_PATIENT:
        return _allow("OWN_ACCOUNT", NORMAL, _scope(matrix, NORMAL, Rights.of()))
    return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)


def _directory(matrix: Matrix, req: Request) -> Decision:
    """The professional directory names no record: patients look up whom to grant, and
    professionals whom they work with; staff and services have no use for it. A request
    that does name a record goes through the record's rules (a block still wins)."""
    p = req.principal
    if p.kind == P.PRINCIPAL_KIND_PATIENT:
        return _allow("DIRECTORY", NORMAL, _scope(matrix, NORMAL, matrix.patient))
    if p.kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        rights = matrix.profession_rights(p.profession_code, p.specialty_code)
        if rights is None:
            return _deny("PROFESSION_EXCLUDED", PERMISSION_DENIED)
        return _allow("DIRECTORY", NORMAL, _scope(matrix, NORMAL, rights))
    return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)


def _record_state_denial(
    record: RecordState, req: Request, *, may_reactivate: bool
) -> Decision | None:
    """Rules 9 and 10: a closed record only reactivates; a legacy one only accepts terms."""
    name = req.method_name
    if record.state == CLOSED:
        if may_reactivate and req.action == A.ACTION_MANAGE_RECORD and name == REACTIVATE_DOSSIER:
            return None
        return _deny("DOSSIER_CLOSED", FAILED_PRECONDITION)
    if record.state == TERMS_REQUIRED:
        if may_reactivate and req.action == A.ACTION_MANAGE_RECORD and name == ACCEPT_TERMS:
            return None
        return _deny("TERMS_NOT_ACCEPTED", FAILED_PRECONDITION)
    return None


def _patient(  # noqa: PLR0912 - one branch per access rule
    matrix: Matrix, req: Request, record: RecordState | None, now: datetime
) -> Decision:
    p = req.principal
    if req.action == A.ACTION_MANAGE_RECORD and req.method_name == CREATE_DOSSIER:
        if record is None and p.patient_ins and p.patient_ins == req.patient_ins:
            return _allow("PATIENT_SELF", NORMAL, _scope(matrix, NORMAL, matrix.patient))
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if record is None:
        if (
            req.action == A.ACTION_MANAGE_ACCOUNT
            and p.patient_ins
            and p.patient_ins == req.patient_ins
        ):
            # Their own contact preferences before any record exists (a professional may
            # create it later, and the patient is told): the INS is the caller's own.
            return _allow("PATIENT_SELF", NORMAL, _scope(matrix, NORMAL, matrix.patient))
        return _hidden("NO_GRANT")
    representative = False
    cache_until = None
    if not p.patient_ins or p.patient_ins != record.patient_ins:
        rep = record.representative(p.patient_ins)
        if rep is None:
            return _hidden("NO_GRANT")
        if rep.access_end_time is not None and rep.access_end_time <= now:
            return _deny("REPRESENTATIVE_ACCESS_ENDED", PERMISSION_DENIED)
        representative = True
        cache_until = rep.access_end_time
    state_denial = _record_state_denial(record, req, may_reactivate=True)
    if state_denial is not None:
        return state_denial
    action = req.action
    if action in (A.ACTION_EMERGENCY_ACCESS, A.ACTION_INGEST_HISTORY, A.ACTION_REISSUE_ACTIVATION):
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    rights = matrix.patient
    res = req.resource
    mine = bool(res.author_subject) and res.author_subject == p.subject
    if action == A.ACTION_READ:
        if not mine and (
            res.deleted
            or INVISIBLE_PATIENT in res.confidentiality
            or (representative and INVISIBLE_REPRESENTATIVES in res.confidentiality)
        ):
            return _deny("DOCUMENT_HIDDEN", NOT_FOUND)
        class_code = _class_of(matrix, req)
        if class_code and not rights.can_read(class_code, res.type_code):
            return _unreadable(req)
    elif action == A.ACTION_WRITE and req.resource_kind == A.RESOURCE_KIND_DOCUMENT:
        class_code = _class_of(matrix, req)
        if class_code and not rights.can_write(class_code, res.type_code):
            return _deny("CLASS_NOT_WRITABLE", PERMISSION_DENIED)
    elif action == A.ACTION_DELETE and res.author_subject and res.author_subject != p.subject:
        return _deny("NOT_AUTHOR", PERMISSION_DENIED)
    reason = "LEGAL_REPRESENTATIVE" if representative else "PATIENT_SELF"
    scope = _scope(
        matrix,
        NORMAL,
        rights,
        masked_visible=True,
        legal_representative=representative,
        # The patient side writes its own advance directives (a representative for a minor).
        directives_writable=action == A.ACTION_WRITE
        and req.resource_kind == A.RESOURCE_KIND_ADVANCE_DIRECTIVES,
    )
    return _allow(reason, NORMAL, scope, cache_until=cache_until)


def _professional(  # noqa: PLR0912, PLR0915 - one branch per access rule
    matrix: Matrix,
    req: Request,
    record: RecordState | None,
    rules: RecordRules,
    now: datetime,
    *,
    rights: Rights,
    regulateur: bool,
) -> Decision:
    p = req.principal
    action = req.action
    name = req.method_name
    if action == A.ACTION_MANAGE_RECORD and name == CREATE_DOSSIER and record is None:
        # Creation by a professional who attests the patient's consent.
        return _allow("PROFESSIONAL_ATTESTATION", NORMAL, _scope(matrix, NORMAL, rights))
    if action == A.ACTION_ISSUE_CREATION_CODE and record is None:
        return _allow("PROFESSIONAL_ATTESTATION", NORMAL, _scope(matrix, NORMAL, rights))
    if record is None:
        return _hidden("NO_GRANT")
    rpps = p.rpps or p.subject
    if rpps in rules.blocks:  # rule 2, emergencies included
        return _hidden("PROFESSIONAL_BLOCKED")

    # Standing: why this professional may have anything to do with the record.
    basis = ""
    mode: int = NORMAL
    cache_until: datetime | None = None
    attending = bool(rules.attending) and rules.attending == rpps
    if attending:
        basis = "ATTENDING_PHYSICIAN"
    elif rules.grant_active(rpps, now):
        basis = "ACCESS_GRANTED"
        cache_until = rules.grants.get(rpps)
    else:
        emergency = rules.emergency(rpps, now)
        if emergency is not None:
            opposed = (emergency.mode == BRIS_DE_GLACE and rules.oppose_bris_de_glace) or (
                emergency.mode == CENTRE_15 and rules.oppose_centre_15
            )
            if opposed:
                return _deny("EMERGENCY_OPPOSED", PERMISSION_DENIED, emergency.mode)
            basis = "EMERGENCY_ACCESS"
            mode = emergency.mode
            cache_until = emergency.expire_time
    class_code = _class_of(matrix, req)
    care_context_grant = action == A.ACTION_MANAGE_CONSENT and (
        req.care_context or name == GRANT_ACCESS
    )
    # Advance directives are written only with standing (a grant, or as médecin traitant):
    # rule 5's write right alone does not reach them.
    directives_write = (
        action == A.ACTION_WRITE and req.resource_kind == A.RESOURCE_KIND_ADVANCE_DIRECTIVES
    )
    writes = (
        action in (A.ACTION_WRITE, A.ACTION_DELETE)
        and not directives_write
        and (
            rights.can_write(class_code, req.resource.type_code)
            if class_code
            else rights.writes_anything
        )
    )
    # A resource the matrix's `record` key lets this profession record (a nurse's or a
    # pharmacist's vaccination): only under an access to the record in normal mode, never
    # on the strength of the write right alone (rule 5 is for writers of the whole class).
    records_resource = (
        action == A.ACTION_WRITE
        and req.resource_kind != A.RESOURCE_KIND_DOCUMENT
        and rights.records(req.resource_kind)
    )
    if not (basis or writes or care_context_grant or action == A.ACTION_EMERGENCY_ACCESS):
        return _hidden("NO_GRANT")

    state_denial = _record_state_denial(record, req, may_reactivate=False)
    if state_denial is not None:
        return state_denial
    first = rpps not in rules.accessed
    base_obligations: tuple[int, ...] = (OB_AUDIT, OB_FIRST) if first else (OB_AUDIT,)

    if action == A.ACTION_EMERGENCY_ACCESS:
        return _emergency_request(
            matrix,
            req,
            rules,
            rights=rights,
            regulateur=regulateur,
            base_obligations=base_obligations,
            first=first,
        )
    if action == A.ACTION_ISSUE_CREATION_CODE and basis and mode == NORMAL:
        # A professional the patient's record admits (the creator who keeps access, a granted
        # or attending doctor; not an emergency access) may print the patient's activation
        # letter: identity's answer says nothing about the account and cancels no other code.
        return _allow(basis, mode, _scope(matrix, mode, rights, masked_visible=attending))
    if care_context_grant:
        return _allow(
            "CARE_CONTEXT_ATTESTATION",
            NORMAL,
            _scope(matrix, NORMAL, rights),
            (*base_obligations, OB_CARE_CONTEXT),
            first_access=first,
        )
    if directives_write:
        return _directives_write(
            matrix,
            req,
            basis,
            mode,
            rights=rights,
            attending=attending,
            obligations=WRITE_OBLIGATIONS,
            cache_until=cache_until,
        )
    if action in (A.ACTION_WRITE, A.ACTION_DELETE):
        if not writes and records_resource:
            if mode != NORMAL:  # an emergency opens reading, not recording
                return Decision(
                    False, "EMERGENCY_MODE_NO_RECORDING", "CLASS_NOT_WRITABLE", PERMISSION_DENIED
                )
            return _allow(
                basis,
                NORMAL,
                _scope(matrix, NORMAL, rights, masked_visible=attending),
                WRITE_OBLIGATIONS,
                cache_until=cache_until,
            )
        if not writes:
            return _deny("CLASS_NOT_WRITABLE", PERMISSION_DENIED)
        res = req.resource
        if action == A.ACTION_DELETE and res.author_rpps and res.author_rpps != rpps:
            return _deny("NOT_AUTHOR", PERMISSION_DENIED)
        return _allow(
            "WRITE_RIGHT",
            NORMAL,
            _scope(matrix, NORMAL, rights, masked_visible=attending),
            WRITE_OBLIGATIONS,
        )
    if action == A.ACTION_READ:
        res = req.resource
        if class_code:
            if not rights.can_read(class_code, res.type_code):
                return _unreadable(req, mode)
        elif not rights.reads_anything:
            return _deny("CLASS_NOT_READABLE", PERMISSION_DENIED, mode)
        author = (bool(res.author_rpps) and res.author_rpps == rpps) or (
            bool(res.author_subject) and res.author_subject == p.subject
        )
        if MASKED in res.confidentiality and not (attending or author):
            return _deny("DOCUMENT_MASKED", NOT_FOUND, mode)
        if res.deleted and not author:
            return _deny("DOCUMENT_DELETED", NOT_FOUND, mode)
    elif action != A.ACTION_READ_ADMINISTRATIVE:
        # Lifecycle, consent management, access log and rules belong to the patient.
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    obligations = base_obligations + ((OB_EMERGENCY,) if mode in EMERGENCY_MODES else ())
    scope = _scope(matrix, mode, rights, masked_visible=attending)
    return _allow(
        basis,
        mode,
        scope,
        obligations,
        first_access=first,
        cache_until=cache_until,
        emergency_rule=_session_rule(rules, rpps, now, basis),
    )


def _session_rule(rules: RecordRules, rpps: str, now: datetime, basis: str) -> str:
    """The EMERGENCY_ACCESS rule an access based on it relies on (its emergency session)."""
    session = rules.emergency(rpps, now) if basis == "EMERGENCY_ACCESS" else None
    return session.rule_id if session is not None else ""


def _directives_write(
    matrix: Matrix,
    req: Request,
    basis: str,
    mode: int,
    *,
    rights: Rights,
    attending: bool,
    obligations: tuple[int, ...],
    cache_until: datetime | None,
) -> Decision:
    """A professional writing the advance directives: a profession the matrix lists
    (`advance_directives.write_professions`), under the patient's grant or as médecin
    traitant. An emergency access reads them but never writes them."""
    if basis not in ("ACCESS_GRANTED", "ATTENDING_PHYSICIAN"):
        return _deny("ADVANCE_DIRECTIVES_NOT_WRITABLE", PERMISSION_DENIED, mode)
    if req.principal.profession_code not in matrix.directive_writers:
        return _deny("ADVANCE_DIRECTIVES_NOT_WRITABLE", PERMISSION_DENIED, mode)
    scope = _scope(matrix, NORMAL, rights, masked_visible=attending, directives_writable=True)
    return _allow(
        basis,
        NORMAL,
        scope,
        obligations,
        first_access=OB_FIRST in obligations,
        cache_until=cache_until,
    )


def _emergency_request(
    matrix: Matrix,
    req: Request,
    rules: RecordRules,
    *,
    rights: Rights,
    regulateur: bool,
    base_obligations: tuple[int, ...],
    first: bool,
) -> Decision:
    """Rule 7: opening an emergency access (the mode is known to consent only)."""
    mode = req.emergency_mode
    if mode == P.ACCESS_MODE_UNSPECIFIED:
        # The gateway's pre-check (the mode is in the request, which consent's servicer
        # decides on): allowed when some mode this caller may open is not opposed.
        open_modes = [m for m in EMERGENCY_MODES if m == BRIS_DE_GLACE or regulateur]
        mode = next(
            (
                m
                for m in open_modes
                if not (m == BRIS_DE_GLACE and rules.oppose_bris_de_glace)
                and not (m == CENTRE_15 and rules.oppose_centre_15)
            ),
            open_modes[-1],
        )
    if mode == CENTRE_15 and not regulateur:
        return _deny("REGULATEUR_ROLE_REQUIRED", PERMISSION_DENIED, mode)
    if mode not in EMERGENCY_MODES:
        return _deny("INVALID_MODE", PERMISSION_DENIED)
    if (mode == BRIS_DE_GLACE and rules.oppose_bris_de_glace) or (
        mode == CENTRE_15 and rules.oppose_centre_15
    ):
        return _deny("EMERGENCY_OPPOSED", PERMISSION_DENIED, mode)
    if not rights.reads_anything:
        return _deny("CLASS_NOT_READABLE", PERMISSION_DENIED, mode)
    return _allow(
        "EMERGENCY_ACCESS",
        mode,
        _scope(matrix, mode, rights),
        (*base_obligations, OB_EMERGENCY),
        first_access=first,
    )


def _staff_or_service(
    matrix: Matrix, req: Request, record: RecordState | None, rows: list[RoleRow], now: datetime
) -> Decision:
    """Staff and services: what the role may do is decided before whether the record exists,
    so a role without standing (the AMO reading, an administrative agent writing) gets one
    answer whether the record exists or not (AIP-211)."""
    incapable = _staff_capability(matrix, req, record, rows)
    if incapable is not None:
        return incapable
    manage_record = any(r.manage_record for r in rows)
    action = req.action
    admin_scope = _scope(matrix, NORMAL, Rights.of(), administrative_only=True)
    if action == A.ACTION_REISSUE_ACTIVATION:
        if record is None:
            return _hidden("NO_GRANT")
        # Never cached at the edge: every reissue is decided, logged and alerted.
        return _allow(
            "SUPPORT_REISSUE", NORMAL, _scope(matrix, NORMAL, Rights.of()), cache_until=now
        )
    if action == A.ACTION_ISSUE_CREATION_CODE:
        return _allow("ADMINISTRATIVE", NORMAL, admin_scope)
    if action == A.ACTION_INGEST_HISTORY:
        return _allow("WRITE_RIGHT", NORMAL, _scope(matrix, NORMAL, Rights.of(write=["60"])))
    if action == A.ACTION_MANAGE_RECORD and req.method_name == CREATE_DOSSIER and record is None:
        return _allow("ADMINISTRATIVE", NORMAL, admin_scope)
    if record is None:
        return _hidden("NO_GRANT")
    reactivating = manage_record and action == A.ACTION_MANAGE_RECORD
    state_denial = _record_state_denial(record, req, may_reactivate=reactivating)
    if state_denial is not None:
        return state_denial
    if action == A.ACTION_WRITE:
        write_classes: frozenset[str] = frozenset().union(*(r.rights.write for r in rows))
        return _allow("WRITE_RIGHT", NORMAL, _scope(matrix, NORMAL, Rights.of(write=write_classes)))
    return _allow("ADMINISTRATIVE", NORMAL, admin_scope)


def _staff_capability(  # noqa: PLR0912 - one answer per action family
    matrix: Matrix, req: Request, record: RecordState | None, rows: list[RoleRow]
) -> Decision | None:
    """The refusal a staff or service role gets for this action on any record, or None."""
    administrative = any(r.administrative for r in rows)
    manage_record = any(r.manage_record for r in rows)
    write_classes: frozenset[str] = frozenset().union(*(r.rights.write for r in rows))
    action = req.action
    name = req.method_name
    if action == A.ACTION_REISSUE_ACTIVATION:
        reissues = any(r.reissue_activation for r in rows)
        return None if reissues else _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if action == A.ACTION_ISSUE_CREATION_CODE:
        return None if manage_record else _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if action == A.ACTION_INGEST_HISTORY:
        return None if "60" in write_classes else _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if action == A.ACTION_MANAGE_RECORD:
        if not manage_record:
            return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
        if name == CREATE_DOSSIER:
            # A desk creating a record that exists: it has standing to learn so.
            return None if record is None else _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
        if name in (CLOSE_DOSSIER, REACTIVATE_DOSSIER):
            return None
        return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if action == A.ACTION_WRITE:
        write_class = _class_of(matrix, req)
        if write_classes and write_class and write_class in write_classes:
            return None
        if write_classes:
            return _deny("CLASS_NOT_WRITABLE", PERMISSION_DENIED)
        return _deny("ADMINISTRATIVE_ONLY", PERMISSION_DENIED)
    if action == A.ACTION_READ_ADMINISTRATIVE:
        return None if administrative else _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
    if action == A.ACTION_READ:
        if write_classes and not administrative:
            return _deny("CLASS_NOT_READABLE", PERMISSION_DENIED)  # the AMO never reads
        return _deny("ADMINISTRATIVE_ONLY", PERMISSION_DENIED)
    if action in _CONTENT_ACTIONS:
        return _deny("ADMINISTRATIVE_ONLY", PERMISSION_DENIED)
    return _deny("ACTION_NOT_ALLOWED", PERMISSION_DENIED)
