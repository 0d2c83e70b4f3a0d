"""login_failures: wrong passwords counted per login identifier, then a throttle.

StartLogin was bounded only by argon2's cost: nothing counted wrong passwords.
The identifier is stored as HMAC-SHA256 under the pepper, never in clear.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("identifier_mac", sa.LargeBinary(32), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("throttled_until", UTCDateTime, nullable=True),
    )
    op.create_index("ix_login_failures_window_start", "login_failures", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_window_start", table_name="login_failures")
    op.drop_table("login_failures")
