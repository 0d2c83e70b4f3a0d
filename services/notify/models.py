"""Schema of notify: one row per message handed (or to be handed) to a provider.

Deliberately absent: the one-time code, the message text and the full
destination. A leaked table tells which masked address got a code and when,
nothing an attacker could log in with.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

from kit.db import BigIntPK, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Stored values of the text columns.
CHANNEL_EMAIL = "email"
CHANNEL_SMS = "sms"
KIND_ONE_TIME_CODE = "one_time_code"
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("channel", String(8), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("purpose", String(16), nullable=True),
    Column("masked_destination", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("send_time", UTCDateTime, nullable=True),
    Column("last_error", String(64), nullable=True),
)

# One row per patient: where and for what to notify them. `choices` is JSON
# {"NOTIFICATION_KIND_…": ["CHANNEL_…", …]} (enum names: stable across renumbering).
contact_preferences = Table(
    "contact_preferences",
    metadata,
    Column("patient", String(64), primary_key=True),
    Column("email", String(254), nullable=True),
    Column("mobile_phone", String(16), nullable=True),
    Column("choices", Text, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
)
