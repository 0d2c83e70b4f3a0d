"""Hash chain of the access log: canonical serialization, entry hashes, verification.

Each record has its own chain (sequence 1, 2, …); an entry's hash covers its
stored fields and the previous entry's hash, so altering, removing or
inserting an entry breaks the chain at that point. The serialization is plain
canonical JSON so an auditor can recompute it in any language.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dmp.consent.v1 import consent_pb2

GENESIS_HASH = "0" * 64

# Stored columns covered by the hash (everything but the row id and the hash itself).
HASHED_FIELDS = (
    "entry_id",
    "dossier",
    "sequence",
    "principal_kind",
    "principal_subject",
    "rpps",
    "profession_code",
    "specialty_code",
    "roles",
    "mode",
    "action",
    "resource_kind",
    "resource",
    "method",
    "decision",
    "reason",
    "policy_version",
    "policy_hash",
    "justification",
    "request_id",
    "trace_id",
    "time",
    "previous_hash",
)
# Hashed too, but only when set: entries written before establishments existed (and every
# call made with a professional's own card) keep the serialization they were chained with.
OPTIONAL_HASHED_FIELDS = ("establishment_finess", "establishment_name", "emergency_access_rule")


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if value is None:
        return ""
    return value


def canonical_bytes(row: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON of the hashed fields (the optional ones when non-empty), sorted keys, no
    whitespace."""
    doc = {name: _canonical_value(row[name]) for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        value = row.get(name)
        if value:
            doc[name] = value
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(row)).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    verified: int
    broken_sequence: int = 0
    broken_entry_id: str = ""
    chain_break: int = consent_pb2.CHAIN_BREAK_UNSPECIFIED
    head_hash: str = GENESIS_HASH
    head_sequence: int = 0


class ChainVerifier:
    """Feed entries in sequence order; stops at the first broken link."""

    def __init__(self) -> None:
        self.expected_sequence = 1
        self.previous_hash = GENESIS_HASH
        self.verified = 0
        self.broken: tuple[int, str, int] | None = None

    def feed(self, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Check `rows`; False once a break is found (further rows are ignored)."""
        for row in rows:
            if self.broken is not None:
                return False
            sequence = int(row["sequence"])
            if sequence != self.expected_sequence:
                self.broken = (sequence, row["entry_id"], consent_pb2.CHAIN_BREAK_SEQUENCE_GAP)
                return False
            if entry_hash(row) != row["entry_hash"]:
                self.broken = (
                    sequence,
                    row["entry_id"],
                    consent_pb2.CHAIN_BREAK_ENTRY_HASH_MISMATCH,
                )
                return False
            if row["previous_hash"] != self.previous_hash:
                self.broken = (
                    sequence,
                    row["entry_id"],
                    consent_pb2.CHAIN_BREAK_PREVIOUS_HASH_MISMATCH,
                )
                return False
            self.previous_hash = row["entry_hash"]
            self.expected_sequence += 1
            self.verified += 1
        return True

    def report(self) -> ChainReport:
        if self.broken is None:
            return ChainReport(
                ok=True,
                verified=self.verified,
                head_hash=self.previous_hash,
                head_sequence=self.expected_sequence - 1,
            )
        sequence, entry_id, kind = self.broken
        return ChainReport(
            ok=False,
            verified=self.verified,
            broken_sequence=sequence,
            broken_entry_id=entry_id,
            chain_break=kind,
            head_hash=self.previous_hash,
            head_sequence=self.expected_sequence - 1,
        )
