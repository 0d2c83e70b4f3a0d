"""The patient's choices: revoking, blocking, the médecin traitant, emergency preferences.

Each change is decided like any access (`guard.permit`), written with its
`dmp.consent.changed` event and its idempotency record in one transaction,
and drops the record's cached rules. Granting (`grants.py`) and emergency
access (`emergency.py`) use the shared steps below; listing is `rule_listing.py`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import grpc
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from kit.db import utcnow
from kit.directory import ProfessionalNotFoundError
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
)
from kit.idempotency import Key
from services.consent import guard, published, repository
from services.consent.log_writer import LogAppender
from services.consent.parse import dossier_of, rule_of
from services.consent.parse import rpps as check_rpps
from services.consent.protos import effective_state, etag, rule_proto
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2
P = principal_pb2

EMERGENCY_PREFERENCES_ID = "emergencyPreferences"
_PHYSICIAN = "10"  # profession code of a médecin: the médecin traitant is one


# -- shared steps ---------------------------------------------------------------------


async def new_rule(
    session: AsyncSession,
    principal: principal_pb2.Principal,
    dossier: str,
    *,
    kind: int,
    rpps: str,
    details: bytes,
    now: datetime,
    display: str = "",
    profession: str = "",
    expire: datetime | None = None,
    rule_id: str = "",
) -> consent_pb2.AccessRule:
    """Write an active rule in the caller's transaction; the rule as answered."""
    row = await repository.insert_rule(
        session,
        rule_id=rule_id or uuid.uuid4().hex,
        dossier=dossier,
        kind=kind,
        rpps=rpps,
        details=details,
        creator=principal.subject,
        now=now,
        display=display,
        profession=profession,
        expire=expire,
    )
    return rule_proto(row, now)


async def _changed_by_patient(
    rt: Runtime,
    session: AsyncSession,
    *,
    dossier: str,
    rule: consent_pb2.AccessRule,
    principal: principal_pb2.Principal,
    method: str,
    key: Key,
    now: datetime,
) -> consent_pb2.AccessRule:
    """Announce a patient's rule change and remember the answer for retries, in one step."""
    await published.consent_changed(
        session, dossier, rule.name, principal.subject, by_patient=True, when=now
    )
    await rt.remember(session, principal=principal, method=method, key=key, response=rule, now=now)
    return rule


async def _professional_info(rt: Runtime, rpps: str) -> tuple[str, str]:
    try:
        info = await rt.directory.lookup(rpps)
    except ProfessionalNotFoundError as exc:
        raise not_found("PROFESSIONAL_NOT_FOUND", "No professional with this RPPS.") from exc
    return (info.display_name, info.profession_code) if info else ("", "")


async def active_rules(
    rt: Runtime, dossier: str, kind: int, rpps: str, now: datetime
) -> list[Row[Any]]:
    async with rt.sessions() as session:
        return await repository.active_rules(session, dossier, kind, rpps, now)


# -- RevokeAccess, UnblockProfessional ------------------------------------------------


async def revoke(
    rt: Runtime, principal: principal_pb2.Principal, request: consent_pb2.RevokeAccessRequest
) -> consent_pb2.AccessRule:
    """End a grant or an emergency access."""
    return await _end(
        rt,
        principal,
        request,
        method="RevokeAccess",
        kinds=(C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_EMERGENCY_ACCESS),
        wrong_kind_reason="RULE_NOT_REVOCABLE",
    )


async def unblock(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.UnblockProfessionalRequest,
) -> consent_pb2.AccessRule:
    return await _end(
        rt,
        principal,
        request,
        method="UnblockProfessional",
        kinds=(C.ACCESS_RULE_KIND_BLOCK,),
        wrong_kind_reason="NOT_A_BLOCK",
    )


async def _end(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.RevokeAccessRequest | consent_pb2.UnblockProfessionalRequest,
    *,
    method: str,
    kinds: tuple[int, ...],
    wrong_kind_reason: str,
) -> consent_pb2.AccessRule:
    """End a rule of one of `kinds` (the others have their own method)."""
    dossier, rule_id = rule_of(request.name)
    key = rt.requests.key(request)
    now = utcnow()
    replay = await rt.replay(principal, method, key, C.AccessRule)
    if replay is not None:
        return replay
    await guard.permit(rt, principal, method, A.ACTION_MANAGE_CONSENT, dossier, now=now)
    async with rt.sessions() as session:
        row = await repository.rule(session, dossier, rule_id)
    if row is None:
        raise not_found("RULE_NOT_FOUND", "No such access rule.")
    if row.kind not in kinds:
        raise failed_precondition(wrong_kind_reason, "This rule has its own method.")
    if effective_state(row, now) != C.ACCESS_RULE_STATE_ACTIVE:
        raise failed_precondition("RULE_NOT_ACTIVE", "This rule is no longer in force.")
    if request.etag and request.etag != etag(row):
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The rule changed.")

    async def write(appender: LogAppender) -> consent_pb2.AccessRule:
        session = appender.session
        await repository.revoke(session, [row.id], principal.subject, now)
        await published.consent_changed(
            session, dossier, request.name, principal.subject, by_patient=True, when=now
        )
        out = rule_proto(await repository.rule_by_id(session, row.id), now)
        await rt.remember(
            session, principal=principal, method=method, key=key, response=out, now=now
        )
        return out

    return await rt.write(dossier, write)


# -- BlockProfessional ----------------------------------------------------------------


async def block(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.BlockProfessionalRequest,
) -> consent_pb2.AccessRule:
    """Block a professional: their grants and emergency accesses on the record end too."""
    method = "BlockProfessional"
    dossier = dossier_of(request.parent, "parent")
    rpps = check_rpps(request.professional_rpps)
    key = rt.requests.key(request)
    now = utcnow()
    replay = await rt.replay(principal, method, key, C.AccessRule)
    if replay is not None:
        return replay
    _, rules, _ = await guard.permit(
        rt, principal, method, A.ACTION_MANAGE_CONSENT, dossier, now=now
    )
    if rules.attending == rpps:
        raise failed_precondition(
            "CANNOT_BLOCK_ATTENDING_PHYSICIAN", "The médecin traitant cannot be blocked."
        )
    if rpps in rules.blocks:
        raise already_exists("ALREADY_BLOCKED", "This professional is already blocked.")
    display, profession = await _professional_info(rt, rpps)

    async def write(appender: LogAppender) -> consent_pb2.AccessRule:
        session = appender.session
        await repository.revoke_active(
            session,
            dossier,
            (C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_EMERGENCY_ACCESS),
            principal.subject,
            now,
            rpps=rpps,
        )
        out = await new_rule(
            session,
            principal,
            dossier,
            kind=C.ACCESS_RULE_KIND_BLOCK,
            rpps=rpps,
            details=b"",
            now=now,
            display=display,
            profession=profession,
        )
        return await _changed_by_patient(
            rt,
            session,
            dossier=dossier,
            rule=out,
            principal=principal,
            method=method,
            key=key,
            now=now,
        )

    return await rt.write(dossier, write)


# -- SetAttendingPhysician ------------------------------------------------------------


async def set_attending(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.SetAttendingPhysicianRequest,
) -> consent_pb2.AccessRule:
    """Name the médecin traitant (a physician, not blocked), or clear it with no RPPS."""
    method = "SetAttendingPhysician"
    dossier = dossier_of(request.name, "name")
    rpps = check_rpps(request.professional_rpps) if request.professional_rpps else ""
    key = rt.requests.key(request)
    now = utcnow()
    replay = await rt.replay(principal, method, key, C.AccessRule)
    if replay is not None:
        return replay
    _, rules, _ = await guard.permit(
        rt, principal, method, A.ACTION_MANAGE_CONSENT, dossier, now=now
    )
    kind = C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN
    current = await active_rules(rt, dossier, kind, rules.attending, now) if rules.attending else []
    if not rpps:
        if not current:
            raise failed_precondition("RULE_NOT_ACTIVE", "There is no médecin traitant to clear.")
    elif rpps in rules.blocks:
        raise failed_precondition("PROFESSIONAL_BLOCKED", "Unblock this professional first.")
    elif current and rules.attending == rpps:
        return rule_proto(current[0], now)
    display = profession = ""
    if rpps:
        display, profession = await _professional_info(rt, rpps)
        if profession and profession != _PHYSICIAN:
            raise invalid_argument(
                "NOT_A_PHYSICIAN", "The médecin traitant must be a physician.", "professional_rpps"
            )

    async def write(appender: LogAppender) -> consent_pb2.AccessRule:
        session = appender.session
        revoked = await repository.revoke_active(session, dossier, (kind,), principal.subject, now)
        if rpps:
            out = await new_rule(
                session,
                principal,
                dossier,
                kind=kind,
                rpps=rpps,
                details=b"",
                now=now,
                display=display,
                profession=profession or _PHYSICIAN,
            )
        else:
            out = rule_proto(await repository.stored_rule(session, dossier, revoked[0]), now)
        return await _changed_by_patient(
            rt,
            session,
            dossier=dossier,
            rule=out,
            principal=principal,
            method=method,
            key=key,
            now=now,
        )

    return await rt.write(dossier, write)


# -- SetEmergencyPreferences ----------------------------------------------------------


async def set_emergency_preferences(
    rt: Runtime,
    principal: principal_pb2.Principal,
    request: consent_pb2.SetEmergencyPreferencesRequest,
) -> consent_pb2.AccessRule:
    """The patient's opposition to bris de glace and Centre 15: one rule per record."""
    method = "SetEmergencyPreferences"
    dossier = dossier_of(request.name, "name")
    key = rt.requests.key(request)
    if not request.HasField("preferences"):
        raise invalid_argument(
            "PREFERENCES_REQUIRED", "Both emergency choices are required.", "preferences"
        )
    now = utcnow()
    replay = await rt.replay(principal, method, key, C.AccessRule)
    if replay is not None:
        return replay
    await guard.permit(rt, principal, method, A.ACTION_MANAGE_CONSENT, dossier, now=now)
    details = request.preferences.SerializeToString(deterministic=True)

    async def write(appender: LogAppender) -> consent_pb2.AccessRule:
        session = appender.session
        existing = await repository.rule(session, dossier, EMERGENCY_PREFERENCES_ID)
        if existing is None:
            out = await new_rule(
                session,
                principal,
                dossier,
                kind=C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES,
                rpps="",
                details=details,
                now=now,
                rule_id=EMERGENCY_PREFERENCES_ID,
            )
        else:
            out = rule_proto(await repository.set_details(session, existing.id, details, now), now)
        return await _changed_by_patient(
            rt,
            session,
            dossier=dossier,
            rule=out,
            principal=principal,
            method=method,
            key=key,
            now=now,
        )

    return await rt.write(dossier, write)
