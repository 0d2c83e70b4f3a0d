"""consent schema: record projection, access rules, idempotency, append-only access log

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE FUNCTION access_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "record_states",
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("patient_ins", sa.String(32), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("minor", sa.Boolean, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("dossier", name="pk_record_states"),
    )
    op.create_index("ix_record_states_patient_ins", "record_states", ["patient_ins"])
    op.create_table(
        "legal_representatives",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("representative_id", sa.String(64), nullable=False),
        sa.Column("ins", sa.String(32), nullable=False),
        sa.Column("access_end_time", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_legal_representatives"),
    )
    op.create_index("ix_legal_representatives_dossier", "legal_representatives", ["dossier"])
    op.create_index("ix_legal_representatives_ins", "legal_representatives", ["ins"])
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("process_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
    )
    op.create_table(
        "access_rules",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("kind", sa.Integer, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("professional_rpps", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("profession_code", sa.String(8), nullable=False),
        sa.Column("details", sa.LargeBinary, nullable=False),
        sa.Column("creator", sa.String(128), nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("expire_time", UTCDateTime, nullable=True),
        sa.Column("revoke_time", UTCDateTime, nullable=True),
        sa.Column("revoker", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_rules"),
        sa.UniqueConstraint("dossier", "rule_id", name="uq_access_rules_dossier_rule_id"),
    )
    op.create_index(
        "ix_access_rules_dossier_kind_state", "access_rules", ["dossier", "kind", "state"]
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("method", sa.String(120), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_keys"),
        sa.UniqueConstraint(
            "subject", "method", "request_id", name="uq_idempotency_keys_subject_method_request_id"
        ),
    )
    op.create_table(
        "professional_accesses",
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("rpps", sa.String(16), nullable=False),
        sa.Column("first_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("dossier", "rpps", name="pk_professional_accesses"),
    )
    op.create_table(
        "access_log",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("principal_kind", sa.Integer, nullable=False),
        sa.Column("principal_subject", sa.String(128), nullable=False),
        sa.Column("rpps", sa.String(16), nullable=False),
        sa.Column("profession_code", sa.String(8), nullable=False),
        sa.Column("specialty_code", sa.String(16), nullable=False),
        sa.Column("roles", sa.String(400), nullable=False),
        sa.Column("mode", sa.Integer, nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("resource_kind", sa.Integer, nullable=False),
        sa.Column("resource", sa.String(400), nullable=False),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("decision", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("justification", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
        sa.UniqueConstraint("entry_id", name="uq_access_log_entry_id"),
        sa.UniqueConstraint("dossier", "sequence", name="uq_access_log_dossier_sequence"),
    )
    op.create_index("ix_access_log_dossier_request_id", "access_log", ["dossier", "request_id"])
    op.create_table(
        "outbox",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])

    # The access log is append-only: refuse UPDATE and DELETE at the database.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER access_log_no_update_delete BEFORE UPDATE OR DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER access_log_no_{verb.lower()} BEFORE {verb} ON access_log "
                "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS access_log_no_truncate ON access_log")
        op.execute("DROP TRIGGER IF EXISTS access_log_no_update_delete ON access_log")
        op.execute("DROP FUNCTION IF EXISTS access_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS access_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS access_log_no_delete")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_access_log_dossier_request_id", table_name="access_log")
    op.drop_table("access_log")
    op.drop_table("professional_accesses")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_access_rules_dossier_kind_state", table_name="access_rules")
    op.drop_table("access_rules")
    op.drop_table("processed_events")
    op.drop_index("ix_legal_representatives_ins", table_name="legal_representatives")
    op.drop_index("ix_legal_representatives_dossier", table_name="legal_representatives")
    op.drop_table("legal_representatives")
    op.drop_index("ix_record_states_patient_ins", table_name="record_states")
    op.drop_table("record_states")
