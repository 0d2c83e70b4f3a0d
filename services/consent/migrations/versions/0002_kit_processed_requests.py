"""idempotency_keys → processed_requests in the shape of kit.idempotency.

Rows are kept: the subject becomes the scope. Their hashes are dropped (NULL):
0001 hashed the request with its request_id, kit hashes it without, so an old
hash would refuse a genuine retry; kit replays such rows without comparing.
Downgrade cannot rebuild 0001's hashes either: restored rows get an empty one,
so a retry after a downgrade is refused as reused, never answered wrongly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("method", "request_id", "request_hash", "response", "create_time")
OLD = sa.table("idempotency_keys", sa.column("id"), sa.column("subject"), *map(sa.column, COLUMNS))
NEW = sa.table("processed_requests", sa.column("id"), sa.column("scope"), *map(sa.column, COLUMNS))


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
    op.execute(
        NEW.insert().from_select(
            ["scope", *COLUMNS],
            sa.select(
                OLD.c.subject,
                OLD.c.method,
                OLD.c.request_id,
                sa.cast(sa.null(), sa.String(64)),
                OLD.c.response,
                OLD.c.create_time,
            ).order_by(OLD.c.id),
        )
    )
    op.drop_table("idempotency_keys")


def downgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigIntPK, nullable=False, autoincrement=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("method", sa.String(120), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_keys"),
        sa.UniqueConstraint(
            "subject", "method", "request_id", name="uq_idempotency_keys_subject_method_request_id"
        ),
    )
    # 0001 kept every response; rows without one (a secret) have nothing to restore.
    op.execute(
        OLD.insert().from_select(
            ["subject", *COLUMNS],
            sa.select(
                NEW.c.scope,
                NEW.c.method,
                NEW.c.request_id,
                sa.literal(""),
                NEW.c.response,
                NEW.c.create_time,
            )
            .where(NEW.c.response.is_not(None))
            .order_by(NEW.c.id),
        )
    )
    op.drop_table("processed_requests")
