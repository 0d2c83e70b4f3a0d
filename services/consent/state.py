"""What a decision depends on, as immutable values.

`RecordState` is consent's projection of a record (fed by records events);
`RecordRules` is the record's active access rules. Both are cached in memory
per record and replaced, never mutated, when they change, so a decision reads
a consistent snapshot without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dmp.records.v1 import records_pb2

ACTIVE = records_pb2.DOSSIER_STATE_ACTIVE
TERMS_REQUIRED = records_pb2.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED
CLOSED = records_pb2.DOSSIER_STATE_CLOSED


@dataclass(frozen=True)
class Representative:
    """A minor's legal representative: acts for the patient until `access_end_time`."""

    ins: str
    access_end_time: datetime | None = None


@dataclass(frozen=True)
class RecordState:
    dossier: str  # `dossiers/{dossier}`
    patient_ins: str
    state: int  # records.v1.DossierState
    minor: bool = False
    representatives: tuple[Representative, ...] = ()

    def representative(self, ins: str) -> Representative | None:
        if not ins or not self.minor:
            return None
        for rep in self.representatives:
            if rep.ins == ins:
                return rep
        return None


@dataclass(frozen=True)
class EmergencyGrant:
    """An open emergency access of one professional."""

    rule_id: str
    mode: int  # authz.v1.AccessMode
    expire_time: datetime


@dataclass(frozen=True)
class RecordRules:
    """Active rules of one record; expiry is evaluated at decision time."""

    grants: Mapping[str, datetime | None] = field(default_factory=dict)  # rpps -> end
    blocks: frozenset[str] = frozenset()
    attending: str = ""
    oppose_bris_de_glace: bool = False
    oppose_centre_15: bool = False
    emergencies: Mapping[str, EmergencyGrant] = field(default_factory=dict)  # rpps -> latest
    accessed: frozenset[str] = frozenset()  # professionals already logged as allowed

    def grant_active(self, rpps: str, now: datetime) -> bool:
        if rpps not in self.grants:
            return False
        end = self.grants[rpps]
        return end is None or end > now

    def emergency(self, rpps: str, now: datetime) -> EmergencyGrant | None:
        grant = self.emergencies.get(rpps)
        if grant is None or grant.expire_time <= now:
            return None
        return grant


EMPTY_RULES = RecordRules()
