"""request_ids → processed_requests in the shape of kit.idempotency.

Rows are kept as they are: the principal becomes the scope, and the request
hash already had kit's form (SHA-256 of the request with request_id cleared).
The key gains the method (kit's rule), so downgrade keeps, per (principal,
request_id), the first row only, and drops rows without a response (0001
kept every response).

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

COLUMNS = ("method", "request_id", "request_hash", "dossier_pk", "response", "create_time")
OLD = sa.table("request_ids", sa.column("id"), sa.column("principal"), *map(sa.column, COLUMNS))
NEW = sa.table("processed_requests", sa.column("id"), sa.column("scope"), *map(sa.column, COLUMNS))


def upgrade() -> None:
    # Same columns as kit.idempotency.processed_requests_table, plus dossier_pk (purge).
    op.create_table(
        "processed_requests",
        sa.Column("id", BigIntPK, autoincrement=True),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("method", sa.String(120), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("response", sa.LargeBinary, nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("dossier_pk", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_processed_requests"),
        sa.UniqueConstraint(
            "scope", "method", "request_id", name="uq_processed_requests_scope_method_request_id"
        ),
    )
    op.create_index("ix_processed_requests_dossier_pk", "processed_requests", ["dossier_pk"])
    op.execute(
        NEW.insert().from_select(
            ["scope", *COLUMNS],
            sa.select(OLD.c.principal, *(OLD.c[c] for c in COLUMNS)).order_by(OLD.c.id),
        )
    )
    op.drop_index("ix_request_ids_dossier", table_name="request_ids")
    op.drop_table("request_ids")


def downgrade() -> None:
    op.create_table(
        "request_ids",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("dossier_pk", sa.BigInteger(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal", "request_id", name="uq_request_ids_principal"),
    )
    op.create_index("ix_request_ids_dossier", "request_ids", ["dossier_pk"], unique=False)
    kept = NEW.c.response.is_not(None)
    first = sa.select(sa.func.min(NEW.c.id)).where(kept).group_by(NEW.c.scope, NEW.c.request_id)
    op.execute(
        OLD.insert().from_select(
            ["principal", *COLUMNS],
            sa.select(
                NEW.c.scope,
                sa.func.substr(NEW.c.method, 1, 64),
                NEW.c.request_id,
                sa.func.coalesce(NEW.c.request_hash, ""),
                NEW.c.dossier_pk,
                NEW.c.response,
                NEW.c.create_time,
            )
            .where(NEW.c.id.in_(first))
            .order_by(NEW.c.id),
        )
    )
    op.drop_index("ix_processed_requests_dossier_pk", table_name="processed_requests")
    op.drop_table("processed_requests")
