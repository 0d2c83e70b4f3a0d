"""GrantAccess: the patient (or a representative) grants a professional; a professional
attests the patient's consent during care.

A grant is the one change the gateway only pre-checks: its decision is logged
here, once, in the transaction that writes the rule (a professional's
attestation also counts as a first access and notifies the patient).
"""

from __future__ import annotations

import uuid
from datetime import UTC

import grpc

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit import codes
from kit.db import utcnow
from kit.directory import ProfessionalNotFoundError
from kit.errors import (
    ServiceError,
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from services.consent import authorizing, guard, published, rules
from services.consent.decision import Request
from services.consent.log_writer import LogAppender
from services.consent.parse import dossier_named
from services.consent.parse import rpps as check_rpps
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2
P = principal_pb2

METHOD = "GrantAccess"
_PATIENT_KINDS = (P.PRINCIPAL_KIND_PATIENT,)


def _check_grant_caller(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.GrantAccessRequest,
    rpps: str,
) -> None:
    """Bad-input checks of GrantAccess that depend on who calls (nothing is written)."""
    if principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        guard.validate(rt.matrix, principal)
        if not request.HasField("care_context"):
            raise invalid_argument(
                "CARE_CONTEXT_REQUIRED",
                "A professional grants only with a care context.",
                "care_context",
            )
        care = request.care_context
        if not care.consent_attested:
            raise invalid_argument(
                "CONSENT_NOT_ATTESTED",
                "The patient's consent must be attested.",
                "care_context.consent_attested",
            )
        if care.practice_setting_code and not codes.is_valid(
            "practice_settings", care.practice_setting_code
        ):
            raise invalid_argument(
                "PRACTICE_SETTING_UNKNOWN",
                "Unknown practice setting code.",
                "care_context.practice_setting_code",
            )
        if len(care.note) > 500 or len(care.institution_id) > 32:
            raise invalid_argument("FIELD_TOO_LONG", "care_context field too long.")
        if rpps != (principal.rpps or principal.subject):
            raise invalid_argument(
                "GRANTEE_NOT_CALLER",
                "A professional attests consent for themself only.",
                "professional_rpps",
            )
    elif principal.kind in _PATIENT_KINDS:
        if request.HasField("care_context"):
            raise invalid_argument(
                "CARE_CONTEXT_NOT_ALLOWED",
                "Only a professional attests a care context.",
                "care_context",
            )
    else:
        raise permission_denied("PRINCIPAL_KIND_NOT_ALLOWED", "This caller may not grant.")


async def _grantee(
    rt: Runtime, rpps: str, by_professional: bool, caller_profession: str
) -> tuple[str, str]:
    """The grantee's name and profession; a profession, specialty or role the platform
    excludes can never use a grant, so granting it is refused rather than listed."""
    try:
        info = await rt.directory.lookup(rpps)
    except ProfessionalNotFoundError as exc:
        raise not_found("PROFESSIONAL_NOT_FOUND", "No professional with this RPPS.") from exc
    if info is None:  # directory not configured or unreachable: the card decides at use
        return "", caller_profession if by_professional else ""
    matrix = rt.matrix
    excluded_role = any(
        (row := matrix.roles.get(role)) is not None and row.excluded for role in info.roles
    )
    rights = matrix.profession_rights(info.profession_code, info.specialty_code)
    if excluded_role or (info.profession_code in matrix.professions and rights is None):
        raise failed_precondition(
            "GRANTEE_EXCLUDED", "This professional's profession or role never accesses a record."
        )
    return info.display_name, info.profession_code


async def grant(
    rt: Runtime, principal: principal_pb2.Principal, request: consent_pb2.GrantAccessRequest
) -> consent_pb2.AccessRule:
    dossier = await dossier_named(rt.cache, request.parent, "parent")
    rpps = check_rpps(request.professional_rpps)
    key = rt.requests.key(request)
    now = utcnow()
    expire = request.expire_time.ToDatetime(tzinfo=UTC) if request.HasField("expire_time") else None
    if expire is not None and expire <= now:
        raise invalid_argument("EXPIRE_TIME_IN_PAST", "expire_time is in the past.", "expire_time")
    by_professional = principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL
    _check_grant_caller(rt, principal, request, rpps)
    replay = await rt.replay(principal, METHOD, key, C.AccessRule)
    if replay is not None:
        return replay
    _, record_rules, decision = await guard.permit(
        rt,
        principal,
        METHOD,
        A.ACTION_MANAGE_CONSENT,
        dossier,
        now=now,
        care_context=by_professional,
    )
    if rpps in record_rules.blocks:
        raise failed_precondition("PROFESSIONAL_BLOCKED", "This professional is blocked.")
    active = await rules.active_rules(rt, dossier, C.ACCESS_RULE_KIND_GRANT, rpps, now)
    if active:
        raise ServiceError(
            grpc.StatusCode.ALREADY_EXISTS,
            "GRANT_ALREADY_ACTIVE",
            "This professional already has access.",
            metadata={"access_rule": f"{dossier}/accessRules/{active[0].rule_id}"},
        )
    display, profession = await _grantee(rt, rpps, by_professional, principal.profession_code)
    details = C.GrantDetails(
        source=(
            C.GRANT_SOURCE_CARE_CONTEXT
            if by_professional
            else C.GRANT_SOURCE_LEGAL_REPRESENTATIVE
            if decision.reason == "LEGAL_REPRESENTATIVE"
            else C.GRANT_SOURCE_PATIENT
        )
    )
    if by_professional:
        details.care_context.CopyFrom(request.care_context)
        details.care_context.attest_time.FromDatetime(now)
    rule_id = uuid.uuid4().hex
    req = Request(
        principal,
        A.ACTION_MANAGE_CONSENT,
        A.RESOURCE_KIND_ACCESS_RULE,
        guard.SERVICE + METHOD,
        care_context=by_professional,
    )
    result: list[consent_pb2.AccessRule] = []

    async def write(appender: LogAppender, entry: str) -> None:
        session = appender.session
        out = await rules.new_rule(
            session,
            principal,
            dossier,
            kind=C.ACCESS_RULE_KIND_GRANT,
            rpps=rpps,
            details=details.SerializeToString(deterministic=True),
            now=now,
            display=display,
            profession=profession,
            expire=expire,
            rule_id=rule_id,
        )
        await published.consent_changed(
            session,
            dossier,
            out.name,
            principal.subject,
            by_patient=not by_professional,
            when=now,
            actor_rpps=principal.rpps if by_professional else "",
        )
        await rt.remember(
            session, principal=principal, method=METHOD, key=key, response=out, now=now
        )
        result.append(out)

    await authorizing.record_decision(
        rt,
        dossier,
        principal,
        req,
        decision,
        now=now,
        resource=f"{dossier}/accessRules/{rule_id}",
        request_id=request.request_id,
        extra=write,
    )
    return result[-1]
