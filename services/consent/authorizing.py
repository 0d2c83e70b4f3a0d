"""Authorize, the gateway's question on every call, and the log entry of every decision.

Each decision on a record is appended to its access log in the transaction
that acts on it; a professional's first allowed access and every emergency
access, and a DMP Info Service reissue, also publish `dmp.consent.access.recorded`
(the patient is told).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit.db import utcnow
from kit.errors import invalid_argument
from services.consent import guard, published, repository
from services.consent.decision import Decision, Request, Resource, decide
from services.consent.log_writer import LogAppender
from services.consent.matrix import Matrix
from services.consent.parse import dossier_of
from services.consent.runtime import Runtime
from services.consent.state import EMPTY_RULES, RecordState

A = authz_pb2
C = consent_pb2
P = principal_pb2

#: Work a caller adds to the transaction of the decision's log entry (given the entry name).
Extra = Callable[[LogAppender, str], Awaitable[None]]


def check_request(rt: Runtime, request: consent_pb2.AuthorizeRequest) -> None:
    """What Authorize needs before deciding (the gateway always sends it)."""
    if not request.HasField("principal"):
        raise invalid_argument("MISSING_PRINCIPAL", "principal is required.", "principal")
    if request.action == A.ACTION_UNSPECIFIED:
        raise invalid_argument("MISSING_ACTION", "action is required.", "action")
    if len(request.request_id) > 64 or len(request.trace_id) > 64:
        raise invalid_argument("FIELD_TOO_LONG", "request_id or trace_id is too long.")
    guard.validate(rt.matrix, request.principal)


def _request(request: consent_pb2.AuthorizeRequest) -> Request:
    res = request.resource
    return Request(
        principal=request.principal,
        action=request.action,
        resource_kind=request.resource_kind,
        method=request.method,
        resource=Resource(
            name=res.name,
            class_code=res.document_class_code,
            type_code=res.document_type_code,
            confidentiality=frozenset(res.confidentiality_codes),
            author_rpps=res.author_rpps,
            author_subject=res.author_subject,
            absent=res.absent,
            deleted=res.deleted,
        ),
        patient_ins=request.patient_ins,
        names_record=bool(request.dossier or request.patient_ins),
    )


async def authorize(
    rt: Runtime, request: consent_pb2.AuthorizeRequest
) -> consent_pb2.AuthorizeResponse:
    """Authorize after `check_request` (also called in-process by the benchmark)."""
    principal = request.principal
    now = utcnow()
    record: RecordState | None
    if request.dossier:
        record = await rt.cache.record(dossier_of(request.dossier, "dossier"))
    elif request.patient_ins:
        record = await rt.cache.record_by_ins(request.patient_ins)
    else:
        record = None
    rules = await rt.cache.rules(record.dossier, now) if record else EMPTY_RULES
    req = _request(request)
    decision = decide(rt.matrix, req, record, rules, now)
    response = C.AuthorizeResponse(
        decision=C.DECISION_ALLOWED if decision.allowed else C.DECISION_DENIED,
        reason=decision.public_reason,
        status_code=decision.status_code,
        obligations=cast(Any, decision.obligations),
        policy_version=rt.matrix.version,
        policy_hash=rt.matrix.sha256,
    )
    if decision.allowed and decision.scope is not None:
        response.scope.CopyFrom(decision.scope)
        until = now + timedelta(seconds=rt.settings.decision_cache_ttl_s)
        if decision.cache_until is not None:
            until = min(until, decision.cache_until)
        response.cache_expire_time.FromDatetime(until)
    if record is None:
        return response
    response.dossier = record.dossier
    if decision.allowed and guard.service_decides(request.method):
        # A pre-check: the method's own handler decides on the whole request and records
        # that decision, so the call is logged once and alerted once, as it happened. A
        # refusal here is final (the call stops at the edge): it is logged below.
        return response
    response.access_log_entry = await record_decision(
        rt,
        record.dossier,
        principal,
        req,
        decision,
        now=now,
        resource=request.resource.name or record.dossier,
        request_id=request.request_id,
        trace_id=request.trace_id,
    )
    return response


async def record_decision(
    rt: Runtime,
    dossier: str,
    principal: principal_pb2.Principal,
    req: Request,
    decision: Decision,
    *,
    now: datetime,
    resource: str,
    request_id: str = "",
    trace_id: str = "",
    justification: str = "",
    extra: Extra | None = None,
    emergency_rule: str = "",
) -> str:
    """Append the decision to the log (+ first-access / emergency events); its entry name.

    `extra` runs in the same transaction (a rule the decision allowed to write): the
    record's cached rules are then dropped. An emergency-mode entry is linked to the
    EMERGENCY_ACCESS rule it relies on (`emergency_rule`: the one being opened, else the
    decision's), and so is its event: notify alerts once per emergency session.
    """
    rpps = principal.rpps or principal.subject
    session_rule = (emergency_rule or decision.emergency_rule) if decision.emergency else ""
    professional = principal.kind == P.PRINCIPAL_KIND_PROFESSIONAL
    marked: list[bool] = []

    async def work(appender: LogAppender) -> str:
        marked.clear()
        if request_id:
            existing = await repository.entry_for_request(
                appender.session, dossier, request_id, principal.subject
            )
            if existing is not None:
                return f"{dossier}/accessLog/{existing}"
        values = log_values(
            rt.matrix,
            principal,
            req,
            decision,
            now=now,
            resource=resource,
            request_id=request_id,
            trace_id=trace_id,
            justification=justification,
            emergency_rule=session_rule,
        )
        row = await appender.append(values)
        name = f"{dossier}/accessLog/{row['entry_id']}"
        if decision.allowed and professional:
            # The cache said "first": confirm against the table (another replica may
            # have recorded it), so the notification goes out once.
            first = await appender.first_access(rpps, now) if decision.first_access else False
            if decision.first_access:  # a write is no access: its professional stays unmarked
                marked.append(first)
            if first or decision.emergency:
                appender.emitted = True
                await published.access_recorded(
                    appender.session,
                    dossier,
                    entry_name=name,
                    principal_kind=principal.kind,
                    subject=rpps,
                    mode=decision.mode,
                    first_access=first,
                    emergency=decision.emergency,
                    when=now,
                    emergency_access_rule=(
                        f"{dossier}/accessRules/{session_rule}" if session_rule else ""
                    ),
                    establishment_finess=str(values["establishment_finess"]),
                    establishment_name=str(values["establishment_name"]),
                )
        elif decision.allowed and req.action == A.ACTION_REISSUE_ACTIVATION:
            # DMP Info Service reissued the activation path: the patient is told at once.
            appender.emitted = True
            await published.access_recorded(
                appender.session,
                dossier,
                entry_name=name,
                principal_kind=principal.kind,
                subject=principal.subject,
                mode=decision.mode,
                first_access=False,
                emergency=False,
                when=now,
                activation_reissued=True,
            )
        if extra is not None:
            await extra(appender, name)
        return name

    if extra is None:  # a decision only: appended in the record's next group commit
        name = await rt.write_decision(dossier, work)
    else:
        name = await rt.write(dossier, work, invalidate=True)
    if marked:
        rt.cache.mark_accessed(dossier, rpps)
    return name


def log_values(
    matrix: Matrix,
    principal: principal_pb2.Principal,
    req: Request,
    decision: Decision,
    *,
    now: datetime,
    resource: str,
    request_id: str = "",
    trace_id: str = "",
    justification: str = "",
    emergency_rule: str = "",
) -> dict[str, Any]:
    """Stored columns of an access-log entry (the chain fields are added on append)."""
    return {
        "entry_id": uuid.uuid4().hex,
        "principal_kind": int(principal.kind),
        "principal_subject": principal.subject[:128],
        "rpps": principal.rpps[:16],
        "profession_code": principal.profession_code[:8],
        "specialty_code": principal.specialty_code[:16],
        "roles": ",".join(principal.roles)[:400],
        "mode": int(decision.mode),
        "action": int(req.action),
        "resource_kind": int(req.resource_kind),
        "resource": resource[:400],
        "method": req.method[:200],
        "decision": int(C.DECISION_ALLOWED if decision.allowed else C.DECISION_DENIED),
        "reason": decision.reason[:64],
        "policy_version": matrix.version[:64],
        "policy_hash": matrix.sha256,
        "justification": justification,
        "request_id": request_id[:64],
        "trace_id": trace_id[:64],
        "time": now,
        "establishment_finess": principal.establishment.finess[:9],
        "establishment_name": principal.establishment.display_name[:100],
        "emergency_access_rule": emergency_rule or None,
    }
