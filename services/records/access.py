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
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit.errors import not_found, permission_denied
from services.records.models import documents

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
    representatives: list[Any],
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


def visible_clause(caller: Caller, now: datetime) -> ColumnElement[bool]:
    """SQL condition of the documents `caller` may see: lists and counts use it."""
    if not caller.reads_documents:
        return false()
    scope = caller.scope
    assert scope is not None
    d = documents.c
    mine = d.author_subject == caller.subject
    conds: list[ColumnElement[bool]] = []
    by_class = [
        *(
            [d.class_code.in_(list(scope.readable_class_codes))]
            if scope.readable_class_codes
            else []
        ),
        *([d.type_code.in_(list(scope.readable_type_codes))] if scope.readable_type_codes else []),
    ]
    conds.append(or_(*by_class))
    conds.append(or_(d.status != records_pb2.DOCUMENT_STATUS_DELETED, mine))
    if not (caller.acts_for_patient or scope.masked_visible):
        conds.append(or_(d.masque_ps.is_(False), mine))
    if caller.acts_for_patient:
        released = and_(d.release_time.is_not(None), d.release_time <= now)
        conds.append(or_(d.invisible_patient.is_(False), released, mine))
    if caller.is_representative:
        conds.append(or_(d.invisible_representants.is_(False), mine))
    return and_(true(), *conds)


def can_see(caller: Caller, row: Any, now: datetime) -> bool:
    """Python twin of `visible_clause` for a single loaded row."""
    if not caller.reads_documents:
        return False
    scope = caller.scope
    assert scope is not None
    mine = row.author_subject == caller.subject
    if not (
        row.class_code in scope.readable_class_codes or row.type_code in scope.readable_type_codes
    ):
        return False
    if row.status == records_pb2.DOCUMENT_STATUS_DELETED and not mine:
        return False
    if row.masque_ps and not (caller.acts_for_patient or scope.masked_visible or mine):
        return False
    if caller.acts_for_patient and row.invisible_patient and not mine:
        released = row.release_time is not None and row.release_time <= now
        if not released:
            return False
    return not (caller.is_representative and row.invisible_representants and not mine)
