"""Directory reads (GetProfessional, ListProfessionals) name no record.

They were once denied to everybody as "no grant" because no record was found;
patients need the directory to choose whom to grant, professionals to find
colleagues. Staff and services have no use for it; excluded roles and
specialties stay refused whatever the action.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from services.consent.decision import Request, decide
from services.consent.matrix import default_matrix
from services.consent.state import RecordRules, RecordState

A = authz_pb2
MATRIX = default_matrix()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
METHOD = "/dmp.identity.v1.IdentityService/GetProfessional"


def ask(
    principal: principal_pb2.Principal,
    record: RecordState | None = None,
    rules: RecordRules | None = None,
) -> tuple[bool, str]:
    req = Request(
        principal=principal,
        action=A.ACTION_READ_DIRECTORY,
        resource_kind=A.RESOURCE_KIND_PROFESSIONAL,
        method=METHOD,
    )
    decision = decide(MATRIX, req, record, rules or RecordRules(), NOW)
    return decision.allowed, decision.reason


def test_patients_and_professionals_read_the_directory() -> None:
    assert ask(principals.patient("185057500000184")) == (True, "DIRECTORY")
    assert ask(principals.professional("10000000017", "10", "SM53")) == (True, "DIRECTORY")
    assert ask(principals.professional("10000000025", "21")) == (True, "DIRECTORY")


def test_excluded_roles_and_specialties_stay_refused() -> None:
    occupational = principals.professional("10000000058", "10", "SM25")
    assert ask(occupational) == (False, "PROFESSION_EXCLUDED")
    conseil = principals.professional("10000000066", "10", "", ("medecin_conseil",))
    assert ask(conseil) == (False, "ROLE_EXCLUDED")


def test_staff_and_services_do_not() -> None:
    desk = principals.staff("desk-1", ("guichet_amo",))
    assert ask(desk) == (False, "ACTION_NOT_ALLOWED")


def test_a_record_in_the_request_brings_its_rules_a_block_wins() -> None:
    record = RecordState("dossiers/d1", "185057500000184", records_pb2.DOSSIER_STATE_ACTIVE)
    blocked = RecordRules(blocks=frozenset({"10000000017"}))
    doctor = principals.professional("10000000017", "10", "SM53")
    assert ask(doctor, record, blocked) == (False, "PROFESSIONAL_BLOCKED")
