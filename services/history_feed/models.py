"""Schema of history_feed.

`claim_lines` keeps every line the AMO sent, for every insured person, keyed
by the AMO's line id: the primary key is the idempotency check, so re-sending
a line is a no-op at database speed. The line itself is stored as its
deterministic protobuf bytes; only what reads filter on is a column.
`content_hash` tells an identical re-send (duplicate) from a conflicting one.

A record's history is not copied anywhere: `dossiers` marks which INS has a
record and from which date its history starts, and reads select the lines
in the window. Lines older than the window therefore roll off by query,
and the source lines stay for a record created later.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
)

from kit.db import UTCDateTime, service_metadata
from kit.idempotency import processed_requests_table

metadata = service_metadata()

MAX_LINE_ID_LENGTH = 64

claim_lines = Table(
    "claim_lines",
    metadata,
    Column("line_id", String(MAX_LINE_ID_LENGTH), primary_key=True),
    Column("patient_ins", String(15), nullable=False),
    Column("care_date", Date, nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("atc_code", String(7), nullable=True),
    Column("content_hash", LargeBinary(16), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("receive_time", UTCDateTime, nullable=False),
    Index("ix_claim_lines_patient_ins_care_date", "patient_ins", "care_date"),
)

#: Column order of bulk writes (COPY and executemany).
CLAIM_COLUMNS: tuple[str, ...] = (
    "line_id",
    "patient_ins",
    "care_date",
    "kind",
    "atc_code",
    "content_hash",
    "payload",
    "receive_time",
)

dossiers = Table(
    "dossiers",
    metadata,
    Column("dossier", String(100), primary_key=True),
    Column("patient_ins", String(15), nullable=False),
    Column("since_date", Date, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Index("ix_dossiers_patient_ins", "patient_ins"),
)

#: Backfills already answered (kit.idempotency), whether asked by RPC or by a
#: `dossier.created` event.
processed_requests = processed_requests_table(metadata)
