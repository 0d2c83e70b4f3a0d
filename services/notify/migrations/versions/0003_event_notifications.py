"""event notifications: notifications, dossier_patients, held_documents

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossier_patients",
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("patient_ins", sa.String(64), nullable=False),
        sa.Column("minor", sa.Boolean, nullable=False),
        sa.Column("representatives", sa.Text, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("dossier", name="pk_dossier_patients"),
    )
    op.create_table(
        "held_documents",
        sa.Column("document", sa.String(160), nullable=False),
        sa.Column("dossier", sa.String(80), nullable=False),
        sa.Column("added_event_id", sa.String(64), nullable=True),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("document", name="pk_held_documents"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("occur_time", UTCDateTime, nullable=False),
        sa.Column("source_subject", sa.String(200), nullable=False),
        sa.Column("source_payload", sa.LargeBinary, nullable=False),
        sa.Column("masked_destination", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("dead_count", sa.Integer, nullable=False),
        sa.Column("next_attempt_time", UTCDateTime, nullable=False),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("send_time", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("notification_id", name="uq_notifications_notification_id"),
        sa.UniqueConstraint(
            "event_id", "recipient", "channel", name="uq_notifications_event_id_recipient_channel"
        ),
    )
    op.create_index(
        "ix_notifications_status_next_attempt_time",
        "notifications",
        ["status", "next_attempt_time"],
    )
    op.create_index("ix_notifications_recipient_id", "notifications", ["recipient", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_recipient_id", table_name="notifications")
    op.drop_index("ix_notifications_status_next_attempt_time", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("held_documents")
    op.drop_table("dossier_patients")
