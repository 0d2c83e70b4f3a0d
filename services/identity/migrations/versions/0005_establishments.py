"""establishments: health establishments, their certificates and their staff.

An establishment's information system connects with its own certificate and asserts, per
call, one of its members (docs/SECURITY.md, "Establishments").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "establishments",
        sa.Column("finess", sa.String(9), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "establishment_certificates",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("finess", sa.String(9), sa.ForeignKey("establishments.finess"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_establishment_certificates_finess", "establishment_certificates", ["finess"]
    )
    op.create_table(
        "establishment_members",
        sa.Column("finess", sa.String(9), sa.ForeignKey("establishments.finess"), primary_key=True),
        sa.Column("rpps", sa.String(11), sa.ForeignKey("professionals.rpps"), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("establishment_members")
    op.drop_index("ix_establishment_certificates_finess", table_name="establishment_certificates")
    op.drop_table("establishment_certificates")
    op.drop_table("establishments")
