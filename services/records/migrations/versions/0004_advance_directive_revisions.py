"""advance_directive_revisions: the advance directives leave the health profile.

Each record's advance directives item of `profile_items` (section
`advance_directives`, removed or not: the live one) becomes revision 1, its
sealed bytes kept as they are (they stay bound to the item id, now `seal_id`);
the profile rows are deleted. Downgrade puts the newest revision back as the
profile item and drops the older revisions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SECTION = "advance_directives"
ITEMS = sa.table(
    "profile_items",
    *map(
        sa.column,
        ("id", "dossier_pk", "item_id", "section", "sealed", "removed", "create_time"),
    ),
    sa.column("update_time"),
)
REVISIONS = sa.table(
    "advance_directive_revisions",
    *map(sa.column, ("id", "dossier_pk", "revision", "seal_id", "sealed", "create_time")),
)


def upgrade() -> None:
    op.create_table(
        "advance_directive_revisions",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("dossier_pk", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("seal_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(["dossier_pk"], ["dossiers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seal_id"),
        sa.UniqueConstraint(
            "dossier_pk", "revision", name="uq_advance_directive_revisions_revision"
        ),
    )
    bind = op.get_bind()
    live = bind.execute(
        sa.select(ITEMS.c.dossier_pk, ITEMS.c.item_id, ITEMS.c.sealed, ITEMS.c.update_time).where(
            ITEMS.c.section == SECTION, ITEMS.c.removed.is_(False)
        )
    ).all()
    for row in live:
        bind.execute(
            REVISIONS.insert().values(
                dossier_pk=row.dossier_pk,
                revision=1,
                seal_id=row.item_id,
                sealed=row.sealed,
                create_time=row.update_time,
            )
        )
    bind.execute(ITEMS.delete().where(ITEMS.c.section == SECTION))


def downgrade() -> None:
    bind = op.get_bind()
    newest = (
        sa.select(REVISIONS.c.dossier_pk, sa.func.max(REVISIONS.c.revision).label("revision"))
        .group_by(REVISIONS.c.dossier_pk)
        .subquery()
    )
    rows = bind.execute(
        sa.select(
            REVISIONS.c.dossier_pk, REVISIONS.c.seal_id, REVISIONS.c.sealed, REVISIONS.c.create_time
        ).join(
            newest,
            sa.and_(
                newest.c.dossier_pk == REVISIONS.c.dossier_pk,
                newest.c.revision == REVISIONS.c.revision,
            ),
        )
    ).all()
    for row in rows:
        bind.execute(
            ITEMS.insert().values(
                dossier_pk=row.dossier_pk,
                item_id=row.seal_id,
                section=SECTION,
                sealed=row.sealed,
                removed=False,
                create_time=row.create_time,
                update_time=row.create_time,
            )
        )
    op.drop_table("advance_directive_revisions")
