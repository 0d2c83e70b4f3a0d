"""Schema of consent: record projection, access rules, idempotency, access log.

`access_log` is append-only: no code path updates or deletes it, and the
migration installs triggers that reject UPDATE and DELETE (PostgreSQL and
SQLite alike). Each row carries the previous row's hash, per record.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kit.db import BigIntPK, UTCDateTime, service_metadata
from kit.idempotency import processed_requests_table
from kit.outbox import outbox_table

metadata = service_metadata()

# Projection of records' dossier events (consent never reads records' tables).
record_states = Table(
    "record_states",
    metadata,
    Column("dossier", String(80), primary_key=True),
    Column("patient_ins", String(32), nullable=False, index=True),
    Column("state", Integer, nullable=False),
    Column("minor", Boolean, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
)

legal_representatives = Table(
    "legal_representatives",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("dossier", String(80), nullable=False, index=True),
    Column("representative_id", String(64), nullable=False),
    Column("ins", String(32), nullable=False, index=True),
    Column("access_end_time", UTCDateTime, nullable=True),
)

# Events of other services already applied (consumers are at-least-once).
processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("process_time", UTCDateTime, nullable=False),
)

access_rules = Table(
    "access_rules",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("rule_id", String(64), nullable=False),
    Column("dossier", String(80), nullable=False),
    Column("kind", Integer, nullable=False),
    Column("state", Integer, nullable=False),
    Column("professional_rpps", String(16), nullable=False, default=""),
    Column("display_name", String(200), nullable=False, default=""),
    Column("profession_code", String(8), nullable=False, default=""),
    Column("details", LargeBinary, nullable=False),  # serialized kind-specific proto
    Column("creator", String(128), nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("expire_time", UTCDateTime, nullable=True),
    Column("revoke_time", UTCDateTime, nullable=True),
    Column("revoker", String(128), nullable=False, default=""),
    UniqueConstraint("dossier", "rule_id"),
    Index("ix_access_rules_dossier_kind_state", "dossier", "kind", "state"),
)

processed_requests = processed_requests_table(metadata)

# Professionals already allowed on a record (first-access notification once).
professional_accesses = Table(
    "professional_accesses",
    metadata,
    Column("dossier", String(80), primary_key=True),
    Column("rpps", String(16), primary_key=True),
    Column("first_time", UTCDateTime, nullable=False),
)

access_log = Table(
    "access_log",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("entry_id", String(32), nullable=False, unique=True),
    Column("dossier", String(80), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("principal_kind", Integer, nullable=False),
    Column("principal_subject", String(128), nullable=False),
    Column("rpps", String(16), nullable=False),
    Column("profession_code", String(8), nullable=False),
    Column("specialty_code", String(16), nullable=False),
    Column("roles", String(400), nullable=False),
    Column("mode", Integer, nullable=False),
    Column("action", Integer, nullable=False),
    Column("resource_kind", Integer, nullable=False),
    Column("resource", String(400), nullable=False),
    Column("method", String(200), nullable=False),
    Column("decision", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("justification", Text, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("trace_id", String(64), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    # The establishment a professional acted through ("" for their own card): FINESS, name.
    Column("establishment_finess", String(9), nullable=False, server_default=""),
    Column("establishment_name", String(100), nullable=False, server_default=""),
    #: Rule id of the EMERGENCY_ACCESS rule (the emergency session) an emergency-mode
    #: entry was decided under; null otherwise. Hashed when set (accesslog.py).
    Column("emergency_access_rule", String(32), nullable=True),
    UniqueConstraint("dossier", "sequence"),
    Index("ix_access_log_dossier_request_id", "dossier", "request_id"),
    Index("ix_access_log_dossier_emergency_access_rule", "dossier", "emergency_access_rule"),
)

outbox = outbox_table(metadata)
