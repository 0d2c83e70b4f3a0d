"""vaccination_reminders: the durable schedule of booster reminders

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vaccination_reminders",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("vaccination", sa.String(length=160), nullable=False),
        sa.Column("dossier", sa.String(length=80), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("due_time", UTCDateTime, nullable=False),
        sa.Column("booster_date", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_payload", sa.LargeBinary(), nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vaccination_reminders"),
        sa.UniqueConstraint("vaccination", name="uq_vaccination_reminders_vaccination"),
    )
    op.create_index(
        "ix_vaccination_reminders_status_due_time",
        "vaccination_reminders",
        ["status", "due_time"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_vaccination_reminders_status_due_time", table_name="vaccination_reminders")
    op.drop_table("vaccination_reminders")
