"""identity's schema. Secrets are never stored in clear: passwords as argon2id
hashes, one-time and creation codes as HMAC-SHA256 under the server pepper,
refresh tokens as SHA-256 (they are 256-bit random, so no pepper is needed).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from kit.db import BigIntPK, UTCDateTime
from kit.idempotency import processed_requests_table
from kit.outbox import outbox_table

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("ins", String(15), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("email", String(254), nullable=True),
    Column("mobile_phone", String(16), nullable=True),
    Column("throttled_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("password_changed_at", UTCDateTime, nullable=False),
)

# A one-time code sent for a login or a recovery. state: pending, used, locked.
challenges = Table(
    "challenges",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("code_mac", LargeBinary(32), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_challenges_account_state", "account_id", "state"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    Index("ix_sessions_account", "account_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index("ix_refresh_tokens_session", "session_id"),
)

creation_codes = Table(
    "creation_codes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("ins", String(15), nullable=False),
    Column("code_mac", LargeBinary(32), nullable=False, unique=True),
    Column("issued_by", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("account_id", String(32), nullable=True),
    # "creation" (on screen), "letter" (printed at creation) or "reissue" (DMP Info Service:
    # account_id is then the account it re-activates).
    Column("purpose", String(16), nullable=False, server_default="creation"),
    Index("ix_creation_codes_ins", "ins"),
)

# DMP Info Service reissues, with the identity check the agent recorded (never answers).
support_reissues = Table(
    "support_reissues",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("agent_subject", String(128), nullable=False),
    Column("ins", String(15), nullable=False),
    Column("account_id", String(32), nullable=False),
    Column("checked", String(200), nullable=False),
    Column("call_reference", String(64), nullable=False),
    Column("delivery", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_support_reissues_agent", "agent_subject", "created_at"),
    Index("ix_support_reissues_ins", "ins", "created_at"),
)

professionals = Table(
    "professionals",
    metadata,
    Column("rpps", String(11), primary_key=True),
    Column("family_name", String(100), nullable=False),
    Column("given_name", String(100), nullable=False),
    Column("profession_code", String(8), nullable=False),
    Column("specialty_code", String(16), nullable=True),
    Column("roles", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_professionals_profession", "profession_code", "rpps"),
)

professional_certificates = Table(
    "professional_certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("rpps", String(11), ForeignKey("professionals.rpps"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_professional_certificates_rpps", "rpps"),
)

# Staff and service cards: a certificate the gateway accepts without a professional behind it.
# kind: staff, service; roles: comma-separated role names, as in `professionals`.
cards = Table(
    "cards",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("organisation", String(100), nullable=True),
    Column("roles", String(200), nullable=False),
    Column("rpps", String(11), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Health establishments (hospital, clinic, laboratory): FINESS, name, kind; their information
# systems' certificates; their staff (directory professionals they may assert, see
# docs/SECURITY.md "Establishments").
establishments = Table(
    "establishments",
    metadata,
    Column("finess", String(9), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

establishment_certificates = Table(
    "establishment_certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("finess", String(9), ForeignKey("establishments.finess"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_establishment_certificates_finess", "finess"),
)

establishment_members = Table(
    "establishment_members",
    metadata,
    Column("finess", String(9), ForeignKey("establishments.finess"), primary_key=True),
    Column("rpps", String(11), ForeignKey("professionals.rpps"), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Login attempts per identifier (services/identity/login_throttle.py): the INS only as
# HMAC-SHA256 under the pepper, whether or not an account has it.
login_failures = Table(
    "login_failures",
    metadata,
    Column("identifier_mac", LargeBinary(32), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("throttled_until", UTCDateTime, nullable=True),
    Index("ix_login_failures_window_start", "window_start"),
)

# Processed mutations (AIP-155), in the shape every service shares.
processed_requests = processed_requests_table(metadata)

outbox = outbox_table(metadata)

__all__ = [
    "accounts",
    "cards",
    "challenges",
    "creation_codes",
    "establishment_certificates",
    "establishment_members",
    "establishments",
    "login_failures",
    "metadata",
    "outbox",
    "processed_requests",
    "professional_certificates",
    "professionals",
    "refresh_tokens",
    "sessions",
]
