"""Consent's own methods are decided like any other access: by `decision.decide`.

A caller manages a record's rules or reads its log only if the same decision
function that answers the gateway allows it; a refusal is the decision's
status and public reason (AIP-211: an unknown record and a refused one look
alike).
"""

from __future__ import annotations

from datetime import datetime

import grpc

from dmp.authz.v1 import authz_pb2, principal_pb2
from kit.authz import method_authz
from kit.errors import ServiceError, invalid_argument, status_code
from services.consent.decision import (
    Decision,
    InvalidPrincipalError,
    Request,
    decide,
    validate_principal,
)
from services.consent.matrix import Matrix
from services.consent.runtime import Runtime
from services.consent.state import RecordRules, RecordState

A = authz_pb2
SERVICE = "/dmp.consent.v1.ConsentService/"


def no_record() -> ServiceError:
    """No such record: answered as a refusal (AIP-211)."""
    return ServiceError(grpc.StatusCode.NOT_FOUND, "NO_GRANT", "Access refused.")


def refusal(decision: Decision) -> ServiceError:
    """The RPC error of a denied decision (AIP-211: NOT_FOUND carries the folded reason)."""
    code = status_code(decision.status_code, grpc.StatusCode.PERMISSION_DENIED)
    return ServiceError(code, decision.public_reason, "Access refused.")


def service_decides(method: str) -> bool:
    """Whether `method`'s own handler decides and records the decision (authz option)."""
    option = method_authz(method)
    return option is not None and option.service_decides


def validate(matrix: Matrix, principal: principal_pb2.Principal) -> None:
    try:
        validate_principal(matrix, principal)
    except InvalidPrincipalError as exc:
        raise invalid_argument(exc.reason, str(exc), "principal") from exc


async def snapshot(rt: Runtime, dossier: str, now: datetime) -> tuple[RecordState, RecordRules]:
    record = await rt.cache.record(dossier)
    if record is None:
        raise no_record()
    return record, await rt.cache.rules(dossier, now)


async def permit(
    rt: Runtime,
    principal: principal_pb2.Principal,
    method: str,
    action: int,
    dossier: str,
    *,
    now: datetime,
    care_context: bool = False,
) -> tuple[RecordState, RecordRules, Decision]:
    """Decide whether the caller may run this consent method; raise when refused."""
    validate(rt.matrix, principal)
    record, rules = await snapshot(rt, dossier, now)
    kind = (
        A.RESOURCE_KIND_ACCESS_LOG
        if action == A.ACTION_READ_ACCESS_LOG
        else A.RESOURCE_KIND_ACCESS_RULE
    )
    req = Request(principal, action, kind, SERVICE + method, care_context=care_context)
    decision = decide(rt.matrix, req, record, rules, now)
    if not decision.allowed:
        raise refusal(decision)
    return record, rules, decision
