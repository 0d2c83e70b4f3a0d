"""The per-record snapshots the decisions read, kept in memory.

Decisions must take well under 2 ms, so each record's state projection and
active rules are cached as immutable snapshots and dropped whenever this
process changes them, on records events, and on `dmp.consent.changed` from
other replicas.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.consent import repository
from services.consent.state import RecordRules, RecordState

K = TypeVar("K")
V = TypeVar("V")


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


class SnapshotCache:
    """Each record's `RecordState` and `RecordRules`, read through on a miss."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], size: int) -> None:
        self._sessions = sessions
        self._records: Lru[str, RecordState] = Lru(size)
        self._rules: Lru[str, RecordRules] = Lru(size)
        self._by_ins: Lru[str, str] = Lru(size)
        # Bumped by every invalidation: a read-through that started before one must not
        # store what it read (with several replicas, another replica's change can land
        # between this replica's read and its store; the snapshot has no expiry).
        self._generation = 0

    def invalidate(self, dossier: str) -> None:
        """Drop `dossier`'s snapshots (empty: every snapshot, e.g. after missed events)."""
        self._generation += 1
        if not dossier:
            self._records.clear()
            self._rules.clear()
            self._by_ins.clear()
            return
        self._records.pop(dossier)
        self._rules.pop(dossier)

    def mark_accessed(self, dossier: str, rpps: str) -> None:
        """`rpps` was just logged as allowed: the next decision is no first access."""
        rules = self._rules.get(dossier)
        if rules is not None and rpps not in rules.accessed:
            self._rules.put(dossier, dataclasses.replace(rules, accessed=rules.accessed | {rpps}))

    async def record(self, dossier: str) -> RecordState | None:
        cached = self._records.get(dossier)
        if cached is not None:
            return cached
        generation = self._generation
        async with self._sessions() as session:
            state = await repository.load_record(session, dossier)
        if state is not None and generation == self._generation:
            self._records.put(dossier, state)
            self._by_ins.put(state.patient_ins, dossier)
        return state

    async def record_by_ins(self, ins: str) -> RecordState | None:
        dossier = self._by_ins.get(ins)
        if dossier is None:
            async with self._sessions() as session:
                dossier = await repository.dossier_by_ins(session, ins)
            if dossier is None:
                return None
        return await self.record(dossier)

    async def rules(self, dossier: str, now: datetime) -> RecordRules:
        cached = self._rules.get(dossier)
        if cached is not None:
            return cached
        generation = self._generation
        async with self._sessions() as session:
            rules = await repository.load_rules(session, dossier, now)
        if generation == self._generation:
            self._rules.put(dossier, rules)
        return rules
