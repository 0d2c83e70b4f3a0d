"""contact_preferences table

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_preferences",
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("mobile_phone", sa.String(16), nullable=True),
        sa.Column("choices", sa.Text, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("patient", name="pk_contact_preferences"),
    )


def downgrade() -> None:
    op.drop_table("contact_preferences")
