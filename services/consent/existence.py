"""CheckDossierExistence: the DMP's existence test, from the patient's INS alone.

Standing is the caller's profession (`decision._existence_test`), decided before and
without the record, so a caller without it learns nothing. With it, the answer says
whether the record exists (consent's projection of records' lifecycle events: the state
every following decision uses), its state, the access already open for this caller and
by which rule, or what an attested care-context consent or an emergency mode would open,
each asked of the same decision function as the call it names. Nothing medical; the test
is logged in the record's access log (no notification: it opens nothing).
"""

from __future__ import annotations

import re
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit import ins as kit_ins
from kit import names
from kit.db import utcnow
from kit.logs import get_logger
from services.consent import authorizing, guard, rules
from services.consent.decision import BRIS_DE_GLACE, CENTRE_15, NORMAL, Request, decide
from services.consent.runtime import Runtime
from services.consent.state import ACTIVE, EMPTY_RULES, RecordRules, RecordState

A = authz_pb2
C = consent_pb2
P = principal_pb2
log = get_logger(__name__)

METHOD = "CheckDossierExistence"
_PATIENT_DOSSIER = re.compile(r"patients/([0-9A-Za-z]{15})/dossier")
_DOSSIER = re.compile(rf"dossiers/{names.DOSSIER_ID}")


async def _record(rt: Runtime, name: str) -> RecordState | None:
    """The record `name` designates, or None (INVALID_NAME / INS_* for a bad name)."""
    alias = _PATIENT_DOSSIER.fullmatch(name)
    if alias is not None:
        return await rt.cache.record_by_ins(kit_ins.validate(alias.group(1), "name"))
    if _DOSSIER.fullmatch(name):
        return await rt.cache.record(name)
    raise names.invalid_name("Expected `patients/{ins}/dossier` or `dossiers/{dossier}`.")


def _request(
    principal: principal_pb2.Principal,
    action: int,
    method: str,
    *,
    care_context: bool = False,
    emergency_mode: int = P.ACCESS_MODE_UNSPECIFIED,
) -> Request:
    return Request(
        principal,
        action,
        A.RESOURCE_KIND_ACCESS_RULE,
        guard.SERVICE + method,
        care_context=care_context,
        emergency_mode=emergency_mode,
    )


def _openable(
    rt: Runtime,
    principal: principal_pb2.Principal,
    record: RecordState,
    record_rules: RecordRules,
    now: datetime,
) -> list[int]:
    """The ways this caller may open the record now, each decided as its own call would be."""
    paths: list[int] = []
    care = _request(principal, A.ACTION_MANAGE_CONSENT, "GrantAccess", care_context=True)
    if decide(rt.matrix, care, record, record_rules, now).allowed:
        paths.append(C.ACCESS_PATH_CARE_CONTEXT_CONSENT)
    for mode, path in (
        (BRIS_DE_GLACE, C.ACCESS_PATH_BRIS_DE_GLACE),
        (CENTRE_15, C.ACCESS_PATH_CENTRE_15),
    ):
        emergency = _request(
            principal, A.ACTION_EMERGENCY_ACCESS, "StartEmergencyAccess", emergency_mode=mode
        )
        if decide(rt.matrix, emergency, record, record_rules, now).allowed:
            paths.append(path)
    return paths


async def _describe(  # noqa: PLR0917 - the inputs of the answer
    rt: Runtime,
    principal: principal_pb2.Principal,
    record: RecordState,
    record_rules: RecordRules,
    now: datetime,
    out: consent_pb2.DossierExistence,
) -> None:
    """Fill what is open (basis, rule, mode, end) or what may be opened."""
    out.access_basis = C.ACCESS_BASIS_NONE
    rpps = principal.rpps or principal.subject
    if record.state != ACTIVE or rpps in record_rules.blocks:
        return  # nothing opens on a record that is not active, nor for a blocked caller
    dossier = record.dossier
    if record_rules.attending and record_rules.attending == rpps:
        found = await rules.active_rules(
            rt, dossier, C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN, rpps, now
        )
        out.access_basis = C.ACCESS_BASIS_ATTENDING_PHYSICIAN
        out.access_mode = NORMAL
        if found:
            out.access_rule = f"{dossier}/accessRules/{found[0].rule_id}"
        return
    if record_rules.grant_active(rpps, now):
        found = await rules.active_rules(rt, dossier, C.ACCESS_RULE_KIND_GRANT, rpps, now)
        out.access_basis = C.ACCESS_BASIS_GRANT
        out.access_mode = NORMAL
        if found:
            row = found[0]
            out.access_rule = f"{dossier}/accessRules/{row.rule_id}"
            details = C.GrantDetails.FromString(row.details or b"")
            if details.source == C.GRANT_SOURCE_RECORD_CREATION:
                out.access_basis = C.ACCESS_BASIS_RECORD_CREATION
        end = record_rules.grants.get(rpps)
        if end is not None:
            out.access_expire_time.CopyFrom(_ts(end))
        return
    emergency = record_rules.emergency(rpps, now)
    opposed = emergency is not None and (
        (emergency.mode == BRIS_DE_GLACE and record_rules.oppose_bris_de_glace)
        or (emergency.mode == CENTRE_15 and record_rules.oppose_centre_15)
    )
    if emergency is not None and not opposed:
        out.access_basis = C.ACCESS_BASIS_EMERGENCY_ACCESS
        out.access_rule = f"{dossier}/accessRules/{emergency.rule_id}"
        out.access_mode = emergency.mode  # type: ignore[assignment]
        out.access_expire_time.CopyFrom(_ts(emergency.expire_time))
        return
    out.available_paths.extend(_openable(rt, principal, record, record_rules, now))  # type: ignore[arg-type]


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def check(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.CheckDossierExistenceRequest,
) -> consent_pb2.DossierExistence:
    guard.validate(rt.matrix, principal)
    record = await _record(rt, request.name)
    now = utcnow()
    record_rules = await rt.cache.rules(record.dossier, now) if record else EMPTY_RULES
    req = Request(
        principal,
        A.ACTION_CHECK_EXISTENCE,
        A.RESOURCE_KIND_DOSSIER,
        guard.SERVICE + METHOD,
        patient_ins=record.patient_ins if record else "",
    )
    decision = decide(rt.matrix, req, record, record_rules, now)
    if not decision.allowed:
        raise guard.refusal(decision)  # the gateway logged it (its decision is final)
    out = C.DossierExistence(
        name=request.name, exists=record is not None, policy_version=rt.matrix.version
    )
    if record is None:
        log.info("existence_test", exists=False)
        return out
    out.dossier = record.dossier
    out.state = record.state  # type: ignore[assignment]
    await _describe(rt, principal, record, record_rules, now, out)
    out.access_log_entry = await authorizing.record_decision(
        rt, record.dossier, principal, req, decision, now=now, resource=record.dossier
    )
    return out
