"""backfills → processed_requests in the shape of kit.idempotency.

BackfillDossier (by RPC or for a `dossier.created` event) remembers its answer
where every service does. The answers already in `backfills` are not carried
over (they are counts of a moment, not state): an event redelivered after
this revision backfills again, which marks nothing new and answers
(0, lines already present). Downgrade gives back an empty `backfills`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("backfills")
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
    op.create_table(
        "backfills",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("dossier", sa.String(100), nullable=False),
        sa.Column("materialized_count", sa.BigInteger, nullable=False),
        sa.Column("already_present_count", sa.BigInteger, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_backfills"),
    )
