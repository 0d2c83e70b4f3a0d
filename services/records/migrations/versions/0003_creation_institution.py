"""dossiers.creator_institution: the FINESS or SIRET a professional declared at creation.

The insurer counts the records created per creating professional and per institution
(a pharmacy's FINESS) in a time window (CountDossierCreations); the index serves that
window. Existing rows get "" (no institution was kept before).

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
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(
            sa.Column("creator_institution", sa.String(32), nullable=False, server_default="")
        )
    op.create_index("ix_dossiers_channel_create", "dossiers", ["creation_channel", "create_time"])


def downgrade() -> None:
    op.drop_index("ix_dossiers_channel_create", table_name="dossiers")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("creator_institution")
