"""claim lines, dossiers, backfills

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claim_lines",
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("patient_ins", sa.String(15), nullable=False),
        sa.Column("care_date", sa.Date, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("atc_code", sa.String(7), nullable=True),
        sa.Column("content_hash", sa.LargeBinary(16), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("receive_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("line_id", name="pk_claim_lines"),
    )
    op.create_index(
        "ix_claim_lines_patient_ins_care_date", "claim_lines", ["patient_ins", "care_date"]
    )
    op.create_table(
        "dossiers",
        sa.Column("dossier", sa.String(100), nullable=False),
        sa.Column("patient_ins", sa.String(15), nullable=False),
        sa.Column("since_date", sa.Date, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("dossier", name="pk_dossiers"),
    )
    op.create_index("ix_dossiers_patient_ins", "dossiers", ["patient_ins"])
    op.create_table(
        "backfills",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("dossier", sa.String(100), nullable=False),
        sa.Column("materialized_count", sa.BigInteger, nullable=False),
        sa.Column("already_present_count", sa.BigInteger, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_backfills"),
    )


def downgrade() -> None:
    op.drop_table("backfills")
    op.drop_index("ix_dossiers_patient_ins", table_name="dossiers")
    op.drop_table("dossiers")
    op.drop_index("ix_claim_lines_patient_ins_care_date", table_name="claim_lines")
    op.drop_table("claim_lines")
