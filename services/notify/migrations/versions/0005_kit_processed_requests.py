"""processed_requests in the shape of kit.idempotency (AIP-155 rules shared by every service).

SendOneTimeCode and SetContactPreferences remember their answers there;
`deliveries` keeps tracking the sending. No rows are carried over: a code
request sent before this revision and retried after it (within the code's few
minutes) is refused ABORTED REQUEST_IN_PROGRESS and identity starts a new
challenge.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Same columns as kit.idempotency.processed_requests_table.
    op.create_table(
        "processed_requests",
        sa.Column("id", BigIntPK, autoincrement=True),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("method", sa.String(120), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("response", sa.LargeBinary, nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_processed_requests"),
        sa.UniqueConstraint(
            "scope", "method", "request_id", name="uq_processed_requests_scope_method_request_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("processed_requests")
