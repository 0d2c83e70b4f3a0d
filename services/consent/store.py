"""Database access and the per-record in-memory caches the decisions read.

Decisions must take well under 2 ms, so each record's state projection and
active rules are cached as immutable snapshots and dropped whenever this
process changes them, on records events, and on `dmp.consent.changed` from
other replicas. Access-log appends are serialized per record (striped locks)
and protected across replicas by the unique (dossier, sequence) constraint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.consent.v1 import consent_pb2
from kit.db import transaction
from services.consent import accesslog
from services.consent.models import (
    access_log,
    access_rules,
    legal_representatives,
    professional_accesses,
    record_states,
)
from services.consent.state import (
    EmergencyGrant,
    RecordRules,
    RecordState,
    Representative,
)

K = TypeVar("K")
V = TypeVar("V")

C = consent_pb2
_LOCK_STRIPES = 256


class Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class ConsentStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache_size: int,
        *,
        single_writer: bool = False,
    ) -> None:
        self.sessions = sessions
        # SQLite has one writer: queueing here beats its busy-retry sleeps by far.
        self._single_writer = asyncio.Lock() if single_writer else None
        self._records: Lru[str, RecordState] = Lru(cache_size)
        self._rules: Lru[str, RecordRules] = Lru(cache_size)
        self._by_ins: Lru[str, str] = Lru(cache_size)
        self._heads: Lru[str, tuple[int, str]] = Lru(cache_size)
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    # -- caches ------------------------------------------------------------

    def invalidate(self, dossier: str) -> None:
        self._records.pop(dossier)
        self._rules.pop(dossier)

    def lock(self, dossier: str) -> asyncio.Lock:
        if self._single_writer is not None:
            return self._single_writer
        return self._locks[zlib.crc32(dossier.encode()) % _LOCK_STRIPES]

    def mark_accessed(self, dossier: str, rpps: str) -> None:
        rules = self._rules.get(dossier)
        if rules is not None and rpps not in rules.accessed:
            self._rules.put(dossier, dataclasses.replace(rules, accessed=rules.accessed | {rpps}))

    # -- record projection -------------------------------------------------

    async def record(self, dossier: str) -> RecordState | None:
        cached = self._records.get(dossier)
        if cached is not None:
            return cached
        async with self.sessions() as session:
            state = await load_record(session, dossier)
        if state is not None:
            self._records.put(dossier, state)
            self._by_ins.put(state.patient_ins, dossier)
        return state

    async def record_by_ins(self, ins: str) -> RecordState | None:
        dossier = self._by_ins.get(ins)
        if dossier is None:
            async with self.sessions() as session:
                dossier = (
                    await session.execute(
                        select(record_states.c.dossier).where(record_states.c.patient_ins == ins)
                    )
                ).scalar_one_or_none()
            if dossier is None:
                return None
        return await self.record(dossier)

    async def rules(self, dossier: str, now: datetime) -> RecordRules:
        cached = self._rules.get(dossier)
        if cached is not None:
            return cached
        async with self.sessions() as session:
            rules = await load_rules(session, dossier, now)
        self._rules.put(dossier, rules)
        return rules

    # -- access log ----------------------------------------------------------

    async def _head(self, session: AsyncSession, dossier: str) -> tuple[int, str]:
        cached = self._heads.get(dossier)
        if cached is not None:
            return cached
        row = (
            await session.execute(
                select(access_log.c.sequence, access_log.c.entry_hash)
                .where(access_log.c.dossier == dossier)
                .order_by(access_log.c.sequence.desc())
                .limit(1)
            )
        ).first()
        return (int(row.sequence), str(row.entry_hash)) if row else (0, accesslog.GENESIS_HASH)

    @asynccontextmanager
    async def appending(self, dossier: str) -> AsyncIterator[LogAppender]:
        """A transaction in which `append` chains entries to `dossier`'s log.

        Serialized per record in this process; a concurrent replica that took
        the same sequence makes the commit fail on the unique constraint, and
        the caller retries with `retrying_append`.
        """
        async with self.lock(dossier):
            appender = LogAppender(self, dossier)
            try:
                async with transaction(self.sessions) as session:
                    appender.session = session
                    appender.head = await self._head(session, dossier)
                    yield appender
            except IntegrityError:
                self._heads.pop(dossier)
                raise
            if appender.head[0]:
                self._heads.put(dossier, appender.head)


class LogAppender:
    """Chains entries within one transaction (see `ConsentStore.appending`)."""

    def __init__(self, store: ConsentStore, dossier: str) -> None:
        self.store = store
        self.dossier = dossier
        self.session: AsyncSession = None  # type: ignore[assignment]
        self.head: tuple[int, str] = (0, accesslog.GENESIS_HASH)
        self.emitted = False  # an outbox event was queued in this transaction

    async def append(self, values: Mapping[str, Any]) -> dict[str, Any]:
        sequence, previous = self.head
        row = dict(values)
        row["dossier"] = self.dossier
        row["sequence"] = sequence + 1
        row["previous_hash"] = previous
        row["entry_hash"] = accesslog.entry_hash(row)
        await self.session.execute(access_log.insert().values(**row))
        self.head = (row["sequence"], row["entry_hash"])
        return row

    async def first_access(self, rpps: str, now: datetime) -> bool:
        """Record `rpps`'s first allowed access; False if it was already recorded."""
        exists = (
            await self.session.execute(
                select(func.count())
                .select_from(professional_accesses)
                .where(
                    professional_accesses.c.dossier == self.dossier,
                    professional_accesses.c.rpps == rpps,
                )
            )
        ).scalar_one()
        if exists:
            return False
        await self.session.execute(
            professional_accesses.insert().values(dossier=self.dossier, rpps=rpps, first_time=now)
        )
        return True


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


async def load_rules(session: AsyncSession, dossier: str, now: datetime) -> RecordRules:
    rows = (
        await session.execute(
            select(access_rules)
            .where(
                access_rules.c.dossier == dossier,
                access_rules.c.state == C.ACCESS_RULE_STATE_ACTIVE,
            )
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
