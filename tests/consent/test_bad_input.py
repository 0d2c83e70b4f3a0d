"""Bad input: exact status and ErrorInfo reason, and nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from kit.errors import error_info
from tests.consent.helpers import A, C, P, attending, emergency, grant, pro, rid, rpc_error
from tests.consent.test_access_log import _decisions, _tamper
from tests.fixtures.consent import ConsentHarness

TABLES = ("access_log", "access_rules", "processed_requests", "professional_accesses", "outbox")
Setup = Callable[[ConsentHarness, str, str], Awaitable[Any]]


async def _counts(consent: ConsentHarness) -> dict[str, int]:
    return {t: await consent.count(t) for t in TABLES}


def _unknown_profession(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return h.authorize(pro("99"), A.ACTION_READ, d, document_class_code="10")


def _unknown_specialty(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return h.authorize(pro("10", "XX99"), A.ACTION_READ, d, document_class_code="10")


def _attestation_without_care_context(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    doctor = pro("10")
    req = C.GrantAccessRequest(parent=d, professional_rpps=doctor.rpps, request_id=rid())
    return h.call("GrantAccess", req, doctor)


def _consent_not_attested(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    doctor = pro("10")
    req = C.GrantAccessRequest(
        parent=d,
        professional_rpps=doctor.rpps,
        care_context=C.CareContext(consent_attested=False),
        request_id=rid(),
    )
    return h.call("GrantAccess", req, doctor)


def _attestation_for_someone_else(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.GrantAccessRequest(
        parent=d,
        professional_rpps="81234567890",
        care_context=C.CareContext(consent_attested=True),
        request_id=rid(),
    )
    return h.call("GrantAccess", req, pro("10"))


def _emergency_without_justification(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("10"), justification="  ")


def _emergency_short_justification(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("10"), justification="urgent")


def _emergency_without_reason(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("10"), reason=C.EMERGENCY_REASON_UNSPECIFIED)


def _emergency_bad_mode(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("10"), mode=P.ACCESS_MODE_NORMAL)


def _emergency_too_long(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("10"), requested_duration_seconds=7 * 24 * 3600)


def _emergency_unknown_profession(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    return emergency(h, d, pro("99"))


def _grant_bad_rpps(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.GrantAccessRequest(parent=d, professional_rpps="123", request_id=rid())
    return h.call("GrantAccess", req, principals.patient(ins))


def _grant_bad_parent(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.GrantAccessRequest(
        parent="records/1", professional_rpps="81234567890", request_id=rid()
    )
    return h.call("GrantAccess", req, principals.patient(ins))


def _grant_without_request_id(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.GrantAccessRequest(parent=d, professional_rpps="81234567890")
    return h.call("GrantAccess", req, principals.patient(ins))


def _grant_with_malformed_request_id(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.GrantAccessRequest(parent=d, professional_rpps="81234567890", request_id="r-1")
    return h.call("GrantAccess", req, principals.patient(ins))


def _bad_page_token(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.ListAccessHistoryRequest(parent=d, page_token="not-a-token")
    return h.call("ListAccessHistory", req, principals.patient(ins))


def _bad_history_filter(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.ListAccessHistoryRequest(parent=d, filter='time > "yesterday"')
    return h.call("ListAccessHistory", req, principals.patient(ins))


def _bad_rules_filter(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.ListAccessRulesRequest(parent=d, filter="state = ACTIVE")
    return h.call("ListAccessRules", req, principals.patient(ins))


def _authorize_without_principal(h: ConsentHarness, d: str, ins: str) -> Awaitable[Any]:
    req = C.AuthorizeRequest(action=A.ACTION_READ, dossier=d)
    return h.call("Authorize", req, principals.internal())


CASES: list[tuple[str, Setup, grpc.StatusCode, str]] = [
    (
        "unknown-profession",
        _unknown_profession,
        grpc.StatusCode.INVALID_ARGUMENT,
        "PROFESSION_UNKNOWN",
    ),
    (
        "unknown-specialty",
        _unknown_specialty,
        grpc.StatusCode.INVALID_ARGUMENT,
        "SPECIALTY_UNKNOWN",
    ),
    (
        "attestation-without-care-context",
        _attestation_without_care_context,
        grpc.StatusCode.INVALID_ARGUMENT,
        "CARE_CONTEXT_REQUIRED",
    ),
    (
        "consent-not-attested",
        _consent_not_attested,
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONSENT_NOT_ATTESTED",
    ),
    (
        "attestation-for-someone-else",
        _attestation_for_someone_else,
        grpc.StatusCode.INVALID_ARGUMENT,
        "GRANTEE_NOT_CALLER",
    ),
    (
        "emergency-without-justification",
        _emergency_without_justification,
        grpc.StatusCode.INVALID_ARGUMENT,
        "JUSTIFICATION_REQUIRED",
    ),
    (
        "emergency-short-justification",
        _emergency_short_justification,
        grpc.StatusCode.INVALID_ARGUMENT,
        "JUSTIFICATION_REQUIRED",
    ),
    (
        "emergency-without-reason",
        _emergency_without_reason,
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_REQUIRED",
    ),
    ("emergency-bad-mode", _emergency_bad_mode, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_MODE"),
    (
        "emergency-too-long",
        _emergency_too_long,
        grpc.StatusCode.INVALID_ARGUMENT,
        "DURATION_TOO_LONG",
    ),
    (
        "emergency-unknown-profession",
        _emergency_unknown_profession,
        grpc.StatusCode.INVALID_ARGUMENT,
        "PROFESSION_UNKNOWN",
    ),
    ("grant-bad-rpps", _grant_bad_rpps, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RPPS"),
    (
        "grant-bad-parent",
        _grant_bad_parent,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_NAME",
    ),
    (
        "grant-without-request-id",
        _grant_without_request_id,
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REQUIRED",
    ),
    (
        "grant-malformed-request-id",
        _grant_with_malformed_request_id,
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_INVALID",
    ),
    ("bad-page-token", _bad_page_token, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"),
    ("bad-history-filter", _bad_history_filter, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER"),
    ("bad-rules-filter", _bad_rules_filter, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER"),
    (
        "authorize-without-principal",
        _authorize_without_principal,
        grpc.StatusCode.INVALID_ARGUMENT,
        "MISSING_PRINCIPAL",
    ),
]


@pytest.mark.parametrize(("name", "call", "code", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input(
    consent: ConsentHarness, name: str, call: Setup, code: grpc.StatusCode, reason: str
) -> None:
    dossier, ins = await consent.create_record()
    before = await _counts(consent)
    assert await rpc_error(call(consent, dossier, ins)) == (code, reason)
    assert await _counts(consent) == before


async def test_blocking_the_attending_physician(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    doctor = pro("10")
    await attending(consent, dossier, ins, doctor.rpps)
    before = await _counts(consent)
    request = C.BlockProfessionalRequest(
        parent=dossier, professional_rpps=doctor.rpps, request_id=rid()
    )
    assert await rpc_error(consent.call("BlockProfessional", request, principals.patient(ins))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CANNOT_BLOCK_ATTENDING_PHYSICIAN",
    )
    assert await _counts(consent) == before


async def test_granting_on_a_closed_record(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    await consent.set_state(dossier, ins, records_pb2.DOSSIER_STATE_CLOSED)
    before = await _counts(consent)
    request = C.GrantAccessRequest(parent=dossier, professional_rpps=pro().rpps, request_id=rid())
    assert await rpc_error(consent.call("GrantAccess", request, principals.patient(ins))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "DOSSIER_CLOSED",
    )
    assert await _counts(consent) == before


async def test_request_id_reused_with_another_body(consent: ConsentHarness) -> None:
    dossier, ins = await consent.create_record()
    patient = principals.patient(ins)
    key = rid()
    first = C.GrantAccessRequest(parent=dossier, professional_rpps=pro().rpps, request_id=key)
    rule = await consent.call("GrantAccess", first, patient)
    assert await consent.call("GrantAccess", first, patient) == rule  # retried: same answer
    before = await _counts(consent)
    other = C.GrantAccessRequest(parent=dossier, professional_rpps=pro().rpps, request_id=key)
    assert await rpc_error(consent.call("GrantAccess", other, patient)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert await _counts(consent) == before
    assert await rpc_error(grant(consent, dossier, ins, rule.professional_rpps)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "GRANT_ALREADY_ACTIVE",
    )


async def test_corrupted_log_entry_is_reported_not_repaired(consent: ConsentHarness) -> None:
    dossier, ins, _ = await _decisions(consent, 3)
    await _tamper(
        consent,
        "UPDATE access_log SET resource = 'x' WHERE dossier = :d AND sequence = 2",
        d=dossier,
    )
    before = await _counts(consent)
    report = await consent.call(
        "VerifyAccessLog", C.VerifyAccessLogRequest(parent=dossier), principals.patient(ins)
    )
    assert (report.ok, report.first_broken_sequence, report.chain_break) == (
        False,
        2,
        C.CHAIN_BREAK_ENTRY_HASH_MISMATCH,
    )
    assert await _counts(consent) == before
    assert await rpc_error(
        consent.call(
            "VerifyAccessLog",
            C.VerifyAccessLogRequest(parent=dossier, anchor_hash="ab", anchor_sequence=1),
            principals.patient(ins),
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ANCHOR")


async def test_concurrent_twins_change_once(consent: ConsentHarness) -> None:
    """Twins of one request: each gets the first answer or ABORTED REQUEST_IN_PROGRESS."""
    dossier, ins = await consent.create_record()
    before = await _counts(consent)
    request = C.SetEmergencyPreferencesRequest(
        name=dossier,
        preferences=C.EmergencyPreferences(oppose_bris_de_glace=True),
        request_id=rid(),
    )
    patient = principals.patient(ins)
    outcomes = await asyncio.gather(
        *(consent.call("SetEmergencyPreferences", request, patient) for _ in range(4)),
        return_exceptions=True,
    )
    answers = [o for o in outcomes if isinstance(o, C.AccessRule)]
    assert answers
    assert all(a == answers[0] for a in answers)
    for error in (o for o in outcomes if not isinstance(o, C.AccessRule)):
        assert isinstance(error, grpc.aio.AioRpcError), error
        info = error_info(error)
        assert (error.code(), info and info.reason) == (
            grpc.StatusCode.ABORTED,
            "REQUEST_IN_PROGRESS",
        )
    after = await _counts(consent)
    assert after["processed_requests"] == before["processed_requests"] + 1
    assert after["outbox"] == before["outbox"] + 1
    assert await consent.call("SetEmergencyPreferences", request, patient) == answers[0]
