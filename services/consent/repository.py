"""Consent's SQL: the record projection it reads, the access rules, the access log.

Every statement on `access_rules` and every read or append of `access_log` is
here; the domain modules decide, this module reads and writes rows. Functions
take the caller's session, so that a decision's log entry, the rule it changes,
the event it publishes and its idempotency record commit in one transaction.
(The projection's own writes, fed by records events, are in `projection.py`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.consent.v1 import consent_pb2
from services.consent.models import (
    access_log,
    access_rules,
    legal_representatives,
    professional_accesses,
    record_states,
)
from services.consent.state import EmergencyGrant, RecordRules, RecordState, Representative

C = consent_pb2
ACTIVE = C.ACCESS_RULE_STATE_ACTIVE

# -- record projection -------------------------------------------------------------


async def load_record(session: AsyncSession, dossier: str) -> RecordState | None:
    row = (
        await session.execute(select(record_states).where(record_states.c.dossier == dossier))
    ).first()
    if row is None:
        return None
    reps = (
        await session.execute(
            select(legal_representatives.c.ins, legal_representatives.c.access_end_time)
            .where(legal_representatives.c.dossier == dossier)
            .order_by(legal_representatives.c.id)
        )
    ).all()
    return RecordState(
        dossier=row.dossier,
        patient_ins=row.patient_ins,
        state=row.state,
        minor=row.minor,
        representatives=tuple(Representative(r.ins, r.access_end_time) for r in reps if r.ins),
    )


async def dossier_by_ins(session: AsyncSession, ins: str) -> str | None:
    return (
        await session.execute(
            select(record_states.c.dossier).where(record_states.c.patient_ins == ins)
        )
    ).scalar_one_or_none()


# -- access rules ------------------------------------------------------------------


async def load_rules(session: AsyncSession, dossier: str, now: datetime) -> RecordRules:
    """The record's rules in force at `now`, as the decision reads them."""
    rows = (
        await session.execute(
            select(access_rules)
            .where(access_rules.c.dossier == dossier, access_rules.c.state == ACTIVE)
            .order_by(access_rules.c.id)
        )
    ).all()
    grants: dict[str, datetime | None] = {}
    blocks: set[str] = set()
    attending = ""
    oppose_bdg = oppose_c15 = False
    emergencies: dict[str, EmergencyGrant] = {}
    for row in rows:
        kind = row.kind
        if row.expire_time is not None and row.expire_time <= now:
            continue
        if kind == C.ACCESS_RULE_KIND_GRANT:
            grants[row.professional_rpps] = row.expire_time
        elif kind == C.ACCESS_RULE_KIND_BLOCK:
            blocks.add(row.professional_rpps)
        elif kind == C.ACCESS_RULE_KIND_ATTENDING_PHYSICIAN:
            attending = row.professional_rpps
        elif kind == C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES:
            prefs = C.EmergencyPreferences.FromString(row.details)
            oppose_bdg, oppose_c15 = prefs.oppose_bris_de_glace, prefs.oppose_centre_15
        elif kind == C.ACCESS_RULE_KIND_EMERGENCY_ACCESS and row.expire_time is not None:
            details = C.EmergencyAccessDetails.FromString(row.details)
            emergencies[row.professional_rpps] = EmergencyGrant(
                row.rule_id, details.mode, row.expire_time
            )
    accessed = (
        await session.execute(
            select(professional_accesses.c.rpps).where(professional_accesses.c.dossier == dossier)
        )
    ).scalars()
    return RecordRules(
        grants=grants,
        blocks=frozenset(blocks),
        attending=attending,
        oppose_bris_de_glace=oppose_bdg,
        oppose_centre_15=oppose_c15,
        emergencies=emergencies,
        accessed=frozenset(accessed),
    )


def _named(dossier: str, rule_id: str) -> Select[*tuple[Any, ...]]:
    return select(access_rules).where(
        access_rules.c.dossier == dossier, access_rules.c.rule_id == rule_id
    )


async def rule(session: AsyncSession, dossier: str, rule_id: str) -> Row[Any] | None:
    return (await session.execute(_named(dossier, rule_id))).first()


async def stored_rule(session: AsyncSession, dossier: str, rule_id: str) -> Row[Any]:
    """A rule this transaction just wrote or read."""
    return (await session.execute(_named(dossier, rule_id))).one()


async def rule_by_id(session: AsyncSession, row_id: int) -> Row[Any]:
    return (await session.execute(select(access_rules).where(access_rules.c.id == row_id))).one()


async def active_rules(
    session: AsyncSession, dossier: str, kind: int, rpps: str, now: datetime
) -> list[Row[Any]]:
    """`rpps`'s rules of `kind` on the record that are in force at `now`."""
    rows = (
        await session.execute(
            select(access_rules).where(
                access_rules.c.dossier == dossier,
                access_rules.c.kind == kind,
                access_rules.c.professional_rpps == rpps,
                access_rules.c.state == ACTIVE,
            )
        )
    ).all()
    return [r for r in rows if r.expire_time is None or r.expire_time > now]


async def insert_rule(
    session: AsyncSession,
    *,
    rule_id: str,
    dossier: str,
    kind: int,
    rpps: str,
    details: bytes,
    creator: str,
    now: datetime,
    display: str = "",
    profession: str = "",
    expire: datetime | None = None,
) -> Row[Any]:
    """Insert an active rule; the stored row."""
    await session.execute(
        access_rules.insert().values(
            rule_id=rule_id,
            dossier=dossier,
            kind=kind,
            state=ACTIVE,
            professional_rpps=rpps,
            display_name=display,
            profession_code=profession,
            details=details,
            creator=creator,
            create_time=now,
            update_time=now,
            expire_time=expire,
            revoker="",
        )
    )
    return await stored_rule(session, dossier, rule_id)


async def revoke(
    session: AsyncSession, row_ids: Sequence[int], revoker: str, now: datetime
) -> None:
    await session.execute(
        update(access_rules)
        .where(access_rules.c.id.in_(row_ids))
        .values(
            state=C.ACCESS_RULE_STATE_REVOKED, revoke_time=now, revoker=revoker, update_time=now
        )
    )


async def revoke_active(
    session: AsyncSession,
    dossier: str,
    kinds: Sequence[int],
    revoker: str,
    now: datetime,
    *,
    rpps: str | None = None,
) -> list[str]:
    """Revoke the record's active rules of `kinds` (of `rpps` only, if given); their ids."""
    query = select(access_rules.c.id, access_rules.c.rule_id).where(
        access_rules.c.state == ACTIVE,
        access_rules.c.dossier == dossier,
        access_rules.c.kind.in_(kinds),
    )
    if rpps is not None:
        query = query.where(access_rules.c.professional_rpps == rpps)
    rows = (await session.execute(query)).all()
    if rows:
        await revoke(session, [r.id for r in rows], revoker, now)
    return [r.rule_id for r in rows]


async def set_details(
    session: AsyncSession, row_id: int, details: bytes, now: datetime
) -> Row[Any]:
    await session.execute(
        update(access_rules)
        .where(access_rules.c.id == row_id)
        .values(details=details, update_time=now)
    )
    return await rule_by_id(session, row_id)


async def rules_batch(
    session: AsyncSession,
    dossier: str,
    *,
    kinds: Sequence[int],
    active_only: bool,
    before: int | None,
    limit: int,
) -> list[Row[Any]]:
    """The record's rules newest first, below row id `before` (stored state: the caller
    evaluates expiry)."""
    query = select(access_rules).where(access_rules.c.dossier == dossier)
    if kinds:
        query = query.where(access_rules.c.kind.in_(kinds))
    if active_only:
        query = query.where(access_rules.c.state == ACTIVE)
    if before is not None:
        query = query.where(access_rules.c.id < before)
    return list(
        (await session.execute(query.order_by(access_rules.c.id.desc()).limit(limit))).all()
    )


# -- access log --------------------------------------------------------------------


async def log_head(session: AsyncSession, dossier: str) -> tuple[int, str] | None:
    """Sequence and hash of the record's last entry; None for an empty log."""
    row = (
        await session.execute(
            select(access_log.c.sequence, access_log.c.entry_hash)
            .where(access_log.c.dossier == dossier)
            .order_by(access_log.c.sequence.desc())
            .limit(1)
        )
    ).first()
    return (int(row.sequence), str(row.entry_hash)) if row else None


async def insert_log_entry(session: AsyncSession, row: Mapping[str, Any]) -> None:
    await session.execute(access_log.insert().values(**row))


async def entry_for_request(
    session: AsyncSession, dossier: str, request_id: str, subject: str
) -> str | None:
    """The id of the entry `subject`'s request `request_id` already logged on the record."""
    return (
        await session.execute(
            select(access_log.c.entry_id).where(
                access_log.c.dossier == dossier,
                access_log.c.request_id == request_id,
                access_log.c.principal_subject == subject,
            )
        )
    ).scalar_one_or_none()


async def first_access(session: AsyncSession, dossier: str, rpps: str, now: datetime) -> bool:
    """Record `rpps`'s first allowed access; False if it was already recorded."""
    exists = (
        await session.execute(
            select(func.count())
            .select_from(professional_accesses)
            .where(
                professional_accesses.c.dossier == dossier,
                professional_accesses.c.rpps == rpps,
            )
        )
    ).scalar_one()
    if exists:
        return False
    await session.execute(
        professional_accesses.insert().values(dossier=dossier, rpps=rpps, first_time=now)
    )
    return True


async def history_page(
    session: AsyncSession,
    dossier: str,
    *,
    start: datetime | None,
    end: datetime | None,
    rpps: str,
    modes: Sequence[int],
    decision: int,
    before: int | None,
    limit: int,
    emergency_rule: str = "",
) -> list[Row[Any]]:
    """The record's entries newest first, filtered, below sequence `before`."""
    query = select(access_log).where(access_log.c.dossier == dossier)
    if start is not None:
        query = query.where(access_log.c.time >= start)
    if end is not None:
        query = query.where(access_log.c.time < end)
    if rpps:
        query = query.where(access_log.c.rpps == rpps)
    if modes:
        query = query.where(access_log.c.mode.in_(modes))
    if decision:
        query = query.where(access_log.c.decision == decision)
    if emergency_rule:
        query = query.where(access_log.c.emergency_access_rule == emergency_rule)
    if before is not None:
        query = query.where(access_log.c.sequence < before)
    return list(
        (await session.execute(query.order_by(access_log.c.sequence.desc()).limit(limit))).all()
    )


async def chain_batch(
    session: AsyncSession, dossier: str, after: int, limit: int
) -> list[Row[Any]]:
    """The record's entries after sequence `after`, in chain order."""
    return list(
        (
            await session.execute(
                select(access_log)
                .where(access_log.c.dossier == dossier, access_log.c.sequence > after)
                .order_by(access_log.c.sequence)
                .limit(limit)
            )
        ).all()
    )
