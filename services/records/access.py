"""Who the caller is towards one record, and what the signed scope lets them see.

The gateway has asked consent and forwards the decision's `Scope` inside the
signed principal; records applies it again at the data, deny by default: no
scope means no document. Strangers to a record get NOT_FOUND (AIP-211), never
a hint that it exists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit.errors import ServiceError, failed_precondition, not_found, permission_denied
from services.records.repository import dossiers
from services.records.repository.rows import DocumentRow, DossierRow, RepresentativeRow
from services.records.visibility import NOBODY, Visibility, admits

# Roles the platform refuses whatever else they hold (docs/ARCHITECTURE.md, Actors).
EXCLUDED_ROLES = frozenset({"medecin_du_travail", "medecin_conseil", "assureur", "banque"})
DESK_ROLE = "guichet_amo"
ADMIN_ROLE = "administratif"

P = principal_pb2


class Role(enum.Enum):
    PATIENT = "patient"
    REPRESENTATIVE = "representative"
    PROFESSIONAL = "professional"
    DESK = "desk"
    ADMIN_STAFF = "admin_staff"
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    principal: principal_pb2.Principal
    role: Role

    @property
    def subject(self) -> str:
        return self.principal.subject

    @property
    def scope(self) -> principal_pb2.Scope | None:
        return self.principal.scope if self.principal.HasField("scope") else None

    @property
    def acts_for_patient(self) -> bool:
        return self.role in (Role.PATIENT, Role.REPRESENTATIVE)

    @property
    def is_representative(self) -> bool:
        scope = self.scope
        return self.role is Role.REPRESENTATIVE or bool(scope and scope.legal_representative)

    @property
    def reads_documents(self) -> bool:
        scope = self.scope
        if scope is None or scope.administrative_only:
            return False
        if self.role in (Role.DESK, Role.ADMIN_STAFF):
            return False
        return bool(scope.readable_class_codes or scope.readable_type_codes)

    def may_write(self, class_code: str, type_code: str) -> bool:
        """A whole writable class, or a single type the matrix adds (`writable_type_codes`:
        a dietitian's care follow-up report, a pharmacist's medication review)."""
        scope = self.scope
        if scope is None or scope.administrative_only:
            return False
        if self.role in (Role.DESK, Role.ADMIN_STAFF):
            return False
        return class_code in scope.writable_class_codes or type_code in scope.writable_type_codes

    @property
    def visibility(self) -> Visibility:
        """The documents this caller sees on the record (`visibility.admits`)."""
        scope = self.scope
        if scope is None or not self.reads_documents:
            return NOBODY
        return Visibility(
            reads=True,
            subject=self.subject,
            class_codes=frozenset(scope.readable_class_codes),
            type_codes=frozenset(scope.readable_type_codes),
            hides_masked=not (self.acts_for_patient or scope.masked_visible),
            hides_unreleased=self.acts_for_patient,
            hides_from_representatives=self.is_representative,
        )

    @property
    def writes_anything(self) -> bool:
        scope = self.scope
        return bool(
            scope is not None
            and not scope.administrative_only
            and self.role not in (Role.DESK, Role.ADMIN_STAFF)
            and scope.writable_class_codes
        )


def refuse_excluded(principal: principal_pb2.Principal) -> None:
    if EXCLUDED_ROLES.intersection(principal.roles):
        raise permission_denied("ROLE_EXCLUDED", "This role never accesses a medical record.")


def resolve(
    principal: principal_pb2.Principal,
    patient_ins: str,
    representatives: list[RepresentativeRow],
    now: datetime,
) -> Caller:
    """The caller's role on the record of `patient_ins`, or NOT_FOUND."""
    refuse_excluded(principal)
    kind = principal.kind
    if kind == P.PRINCIPAL_KIND_PATIENT:
        if principal.patient_ins and principal.patient_ins == patient_ins:
            return Caller(principal, Role.PATIENT)
        for rep in representatives:
            active = rep.access_end_time is None or rep.access_end_time > now
            linked = (rep.ins and rep.ins == principal.patient_ins) or (
                rep.account_subject and rep.account_subject == principal.subject
            )
            if active and linked:
                return Caller(principal, Role.REPRESENTATIVE)
    elif kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        if principal.HasField("scope") and principal.scope.mode != P.ACCESS_MODE_UNSPECIFIED:
            return Caller(principal, Role.PROFESSIONAL)
    elif kind == P.PRINCIPAL_KIND_STAFF:
        if DESK_ROLE in principal.roles:
            return Caller(principal, Role.DESK)
        if ADMIN_ROLE in principal.roles and principal.HasField("scope"):
            return Caller(principal, Role.ADMIN_STAFF)
    elif kind == P.PRINCIPAL_KIND_SERVICE and principal.HasField("scope"):
        return Caller(principal, Role.SERVICE)
    raise not_found("NOT_FOUND", "Record not found.")


def can_see(caller: Caller, row: DocumentRow, now: datetime) -> bool:
    """Whether `caller` sees this document (the rules of `visibility`)."""
    return admits(caller.visibility, row, now)


@dataclass
class RecordContext:
    """A record row, its representatives, and the caller's role on it."""

    row: DossierRow
    reps: list[RepresentativeRow]
    caller: Caller

    @property
    def pk(self) -> int:
        return self.row.id

    @property
    def dossier_id(self) -> str:
        return self.row.dossier_id


async def open_record(
    session: AsyncSession,
    principal: principal_pb2.Principal,
    *,
    dossier_id: str | None = None,
    patient_ins: str | None = None,
    now: datetime,
    for_update: bool = False,
    allow_closed: bool = False,
    allow_terms: bool = False,
    terms_version: str = "",
) -> RecordContext:
    """The record with the caller's role, after the closed / terms gates (rules 9, 10)."""
    row = await dossiers.find(
        session, dossier_id=dossier_id, patient_ins=patient_ins, for_update=for_update
    )
    if row is None:
        raise not_found("NOT_FOUND", "Record not found.")
    reps = await dossiers.representatives_of(session, row.id)
    return admit(
        row,
        reps,
        principal,
        now,
        allow_closed=allow_closed,
        allow_terms=allow_terms,
        terms_version=terms_version,
    )


def needs_representatives(principal: principal_pb2.Principal, row: DossierRow) -> bool:
    """Whether `resolve` reads the record's representatives for this caller: only a patient
    account that is not the record's own patient may be one of them. A read that already
    holds the record row skips their query for everyone else."""
    return (
        principal.kind == P.PRINCIPAL_KIND_PATIENT
        and not (principal.patient_ins and principal.patient_ins == row.patient_ins)
        and not EXCLUDED_ROLES.intersection(principal.roles)
    )


def admit(
    row: DossierRow,
    reps: list[RepresentativeRow],
    principal: principal_pb2.Principal,
    now: datetime,
    *,
    allow_closed: bool = False,
    allow_terms: bool = False,
    terms_version: str = "",
) -> RecordContext:
    """The caller's role on a record already read, after the closed / terms gates."""
    caller = resolve(principal, row.patient_ins, reps, now)
    if row.state == records_pb2.DOSSIER_STATE_CLOSED and not allow_closed:
        raise failed_precondition("DOSSIER_CLOSED", "The record is closed.")
    if row.state == records_pb2.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED and not allow_terms:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "TERMS_NOT_ACCEPTED",
            "The current terms of use must be accepted first.",
            metadata={"current_terms_version": terms_version},
        )
    return RecordContext(row, reps, caller)
