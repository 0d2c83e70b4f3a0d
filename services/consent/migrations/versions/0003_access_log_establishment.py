"""access_log: the establishment a professional acted through (FINESS, name).

Existing entries get "" (a professional's own card); the hash chain covers these columns
only when they are set, so existing hashes stay valid.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.add_column(
            sa.Column("establishment_finess", sa.String(9), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("establishment_name", sa.String(100), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("establishment_name")
        batch.drop_column("establishment_finess")
