"""StartEmergencyAccess: bris de glace and Centre 15, time-boxed and always logged.

A refused attempt is a decision too: it is logged (and refused) like an
allowed one, which opens an EMERGENCY_ACCESS rule and alerts the patient.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit.db import utcnow
from kit.errors import invalid_argument, permission_denied
from services.consent import authorizing, guard, published, rules
from services.consent.decision import BRIS_DE_GLACE, CENTRE_15, Request, decide
from services.consent.log_writer import LogAppender
from services.consent.parse import dossier_named
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2
P = principal_pb2

METHOD = "StartEmergencyAccess"
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 1000


def _justification(request: consent_pb2.StartEmergencyAccessRequest) -> str:
    if request.mode not in (BRIS_DE_GLACE, CENTRE_15):
        raise invalid_argument("INVALID_MODE", "mode must be bris_de_glace or centre_15.", "mode")
    if request.reason == C.EMERGENCY_REASON_UNSPECIFIED:
        raise invalid_argument("REASON_REQUIRED", "A coded reason is required.", "reason")
    if request.reason not in C.EmergencyReason.values():
        raise invalid_argument("REASON_UNKNOWN", "Unknown emergency reason.", "reason")
    justification = request.justification.strip()
    if len(justification) < JUSTIFICATION_MIN:
        raise invalid_argument(
            "JUSTIFICATION_REQUIRED",
            f"A justification of at least {JUSTIFICATION_MIN} characters is required.",
            "justification",
        )
    if len(justification) > JUSTIFICATION_MAX:
        raise invalid_argument(
            "JUSTIFICATION_TOO_LONG", "The justification is too long.", "justification"
        )
    return justification


def _duration_s(rt: Runtime, request: consent_pb2.StartEmergencyAccessRequest) -> int:
    seconds = request.requested_duration_seconds or rt.settings.emergency_default_s
    if seconds < 0:
        raise invalid_argument(
            "INVALID_DURATION", "The duration must be positive.", "requested_duration_seconds"
        )
    if seconds > rt.settings.emergency_max_s:
        raise invalid_argument(
            "DURATION_TOO_LONG", "The duration exceeds the maximum.", "requested_duration_seconds"
        )
    return seconds


async def start(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.StartEmergencyAccessRequest,
) -> consent_pb2.AccessRule:
    key = rt.requests.key(request)
    if principal.kind != P.PRINCIPAL_KIND_PROFESSIONAL:
        raise permission_denied(
            "PRINCIPAL_KIND_NOT_ALLOWED", "Only a professional opens an emergency access."
        )
    guard.validate(rt.matrix, principal)
    justification = _justification(request)
    seconds = _duration_s(rt, request)
    dossier = await dossier_named(rt.cache, request.parent, "parent")
    now = utcnow()
    replay = await rt.replay(principal, METHOD, key, C.AccessRule)
    if replay is not None:
        return replay
    record, record_rules = await guard.snapshot(rt, dossier, now)
    req = Request(
        principal,
        A.ACTION_EMERGENCY_ACCESS,
        A.RESOURCE_KIND_ACCESS_RULE,
        guard.SERVICE + METHOD,
        emergency_mode=request.mode,
    )
    decision = decide(rt.matrix, req, record, record_rules, now)
    if not decision.allowed:
        # A refused emergency attempt is a decision too: logged, then refused.
        await authorizing.record_decision(
            rt,
            dossier,
            principal,
            req,
            decision,
            now=now,
            resource=dossier,
            request_id=request.request_id,
            justification=justification,
        )
        if decision.reason == "PROFESSIONAL_BLOCKED":
            raise permission_denied("PROFESSIONAL_BLOCKED", "Access refused.")
        raise guard.refusal(decision)
    details = C.EmergencyAccessDetails(
        mode=request.mode, reason=request.reason, justification=justification
    )
    result: list[consent_pb2.AccessRule] = []
    # Known before the rule is written: the opening's log entry and alert name it too.
    rule_id = uuid.uuid4().hex

    async def write(appender: LogAppender, entry: str) -> None:
        out = await rules.new_rule(
            appender.session,
            principal,
            dossier,
            kind=C.ACCESS_RULE_KIND_EMERGENCY_ACCESS,
            rpps=principal.rpps or principal.subject,
            details=details.SerializeToString(deterministic=True),
            now=now,
            profession=principal.profession_code,
            expire=now + timedelta(seconds=seconds),
            rule_id=rule_id,
        )
        await published.consent_changed(
            appender.session, dossier, out.name, principal.subject, by_patient=False, when=now
        )
        await rt.remember(
            appender.session, principal=principal, method=METHOD, key=key, response=out, now=now
        )
        result.append(out)

    await authorizing.record_decision(
        rt,
        dossier,
        principal,
        req,
        decision,
        now=now,
        resource=dossier,
        request_id=request.request_id,
        justification=justification,
        extra=write,
        emergency_rule=rule_id,
    )
    return result[-1]
