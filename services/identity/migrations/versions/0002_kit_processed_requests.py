"""processed_requests in the shape of kit.idempotency (one set of AIP-155 rules).

Rows are kept: the caller becomes the scope; the request hash stays NULL
because this table never kept one (kit replays such rows without comparing,
as identity did). Downgrade keeps one row per request id (the old primary key).

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

OLD = sa.table(
    "processed_requests_0001",
    sa.column("request_id"),
    sa.column("method"),
    sa.column("caller"),
    sa.column("response"),
    sa.column("created_at"),
)
NEW = sa.table(
    "processed_requests_kit",
    sa.column("id"),
    sa.column("scope"),
    sa.column("method"),
    sa.column("request_id"),
    sa.column("request_hash"),
    sa.column("response"),
    sa.column("create_time"),
)


def _create_kit_table() -> None:
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


def _create_0001_table() -> None:
    op.create_table(
        "processed_requests",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def upgrade() -> None:
    op.rename_table("processed_requests", OLD.name)
    _create_kit_table()
    target = sa.table("processed_requests", *(sa.column(c.name) for c in NEW.c if c.name != "id"))
    op.execute(
        target.insert().from_select(
            ["scope", "method", "request_id", "request_hash", "response", "create_time"],
            sa.select(
                OLD.c.caller,
                OLD.c.method,
                OLD.c.request_id,
                sa.cast(sa.null(), sa.String(64)),
                OLD.c.response,
                OLD.c.created_at,
            ),
        )
    )
    op.drop_table(OLD.name)


def downgrade() -> None:
    op.rename_table("processed_requests", NEW.name)
    _create_0001_table()
    target = sa.table("processed_requests", *(sa.column(c.name) for c in OLD.c))
    first = sa.select(sa.func.min(NEW.c.id)).group_by(NEW.c.request_id)
    op.execute(
        target.insert().from_select(
            ["request_id", "method", "caller", "response", "created_at"],
            sa.select(
                NEW.c.request_id,
                sa.func.substr(NEW.c.method, 1, 64),
                sa.func.substr(NEW.c.scope, 1, 64),
                NEW.c.response,
                NEW.c.create_time,
            ).where(NEW.c.id.in_(first), sa.func.length(NEW.c.request_id) <= 36),
        )
    )
    op.drop_table(NEW.name)
