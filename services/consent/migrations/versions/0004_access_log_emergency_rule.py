"""access_log.emergency_access_rule: the emergency session an emergency-mode entry belongs to

Added with ALTER TABLE (no table rebuild, no UPDATE: the append-only triggers
stay in place and no entry is touched); old entries keep NULL, which the hash
leaves out, so their chains verify unchanged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("access_log", sa.Column("emergency_access_rule", sa.String(32), nullable=True))
    op.create_index(
        "ix_access_log_dossier_emergency_access_rule",
        "access_log",
        ["dossier", "emergency_access_rule"],
    )


def downgrade() -> None:
    op.drop_index("ix_access_log_dossier_emergency_access_rule", table_name="access_log")
    op.drop_column("access_log", "emergency_access_rule")
