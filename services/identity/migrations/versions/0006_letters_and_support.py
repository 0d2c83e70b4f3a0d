"""creation_codes.purpose and support_reissues: activation letters and DMP Info Service.

A code now says what it is for: an on-screen creation code, a printed letter's
(weeks, not hours), or a support desk's reissue that re-activates an existing
account. support_reissues keeps who reissued what, after which identity check.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("creation_codes") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(16), nullable=False, server_default="creation")
        )
    op.create_table(
        "support_reissues",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("agent_subject", sa.String(128), nullable=False),
        sa.Column("ins", sa.String(15), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("checked", sa.String(200), nullable=False),
        sa.Column("call_reference", sa.String(64), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_support_reissues_agent", "support_reissues", ["agent_subject", "created_at"]
    )
    op.create_index("ix_support_reissues_ins", "support_reissues", ["ins", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_support_reissues_ins", table_name="support_reissues")
    op.drop_index("ix_support_reissues_agent", table_name="support_reissues")
    op.drop_table("support_reissues")
    with op.batch_alter_table("creation_codes") as batch:
        batch.drop_column("purpose")
