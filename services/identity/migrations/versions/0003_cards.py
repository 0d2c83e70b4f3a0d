"""cards: staff and service certificates registered in the directory.

The gateway now refuses every certificate identity does not know; staff and
service cards, which have no professional behind them, are listed here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cards",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("organisation", sa.String(100), nullable=True),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("rpps", sa.String(11), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cards")
