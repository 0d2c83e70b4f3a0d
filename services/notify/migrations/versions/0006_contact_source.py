"""contact_preferences.source: where the contact data came from (sign-up, creation, patient)

Rows written before this revision came from SetContactPreferences: `patient`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_preferences") as batch:
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default="patient")
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_preferences") as batch:
        batch.drop_column("source")
