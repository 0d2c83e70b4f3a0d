"""records schema: dossiers, representatives, documents (sealed content), health
profile items, vaccinations, idempotency keys, outbox, and the full-text index.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kit.db import BigIntPK, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dossiers",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("dossier_id", sa.String(length=32), nullable=False),
        sa.Column("patient_ins", sa.String(length=15), nullable=False),
        sa.Column("identity", sa.LargeBinary(), nullable=False),
        sa.Column("contact", sa.LargeBinary(), nullable=False),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("creation_channel", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(length=128), nullable=False),
        sa.Column("accepted_terms_version", sa.String(length=32), nullable=False),
        sa.Column("terms_accept_time", UTCDateTime, nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("close_time", UTCDateTime, nullable=True),
        sa.Column("close_reason", sa.Integer(), nullable=False),
        sa.Column("close_comment", sa.Text(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("profile_revision", sa.Integer(), nullable=False),
        sa.Column("profile_update_time", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dossier_id"),
        sa.UniqueConstraint("patient_ins"),
    )
    op.create_index("ix_dossiers_state_close", "dossiers", ["state", "close_time"], unique=False)
    op.create_table(
        "outbox",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"], unique=False)
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
    op.create_table(
        "documents",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(length=32), nullable=False),
        sa.Column("dossier_pk", sa.BigInteger(), nullable=False),
        sa.Column("unique_id", sa.String(length=128), nullable=True),
        sa.Column("type_code", sa.String(length=32), nullable=False),
        sa.Column("class_code", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("author_rpps", sa.String(length=16), nullable=False),
        sa.Column("author_subject", sa.String(length=128), nullable=False),
        sa.Column("submitter", sa.String(length=128), nullable=False),
        sa.Column("service_start_time", UTCDateTime, nullable=True),
        sa.Column("service_stop_time", UTCDateTime, nullable=True),
        sa.Column("sort_time", UTCDateTime, nullable=False),
        sa.Column("practice_setting_code", sa.String(length=32), nullable=False),
        sa.Column("facility_type_code", sa.String(length=32), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("masque_ps", sa.Boolean(), nullable=False),
        sa.Column("invisible_patient", sa.Boolean(), nullable=False),
        sa.Column("invisible_representants", sa.Boolean(), nullable=False),
        sa.Column("release_time", UTCDateTime, nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("replaces_id", sa.String(length=32), nullable=True),
        sa.Column("replaced_by_id", sa.String(length=32), nullable=True),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.Column("archive_time", UTCDateTime, nullable=True),
        sa.Column("delete_time", UTCDateTime, nullable=True),
        sa.Column("delete_reason", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dossier_pk"], ["dossiers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("document_id"),
        sa.UniqueConstraint("unique_id"),
    )
    op.create_index(
        "ix_documents_dossier_created",
        "documents",
        ["dossier_pk", "create_time", "id"],
        unique=False,
    )
    op.create_index(
        "ix_documents_dossier_sort", "documents", ["dossier_pk", "sort_time", "id"], unique=False
    )
    op.create_table(
        "profile_items",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("dossier_pk", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("section", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.Column("update_time", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(["dossier_pk"], ["dossiers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id"),
    )
    op.create_index(
        "ix_profile_items_dossier", "profile_items", ["dossier_pk", "section"], unique=False
    )
    op.create_table(
        "representatives",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("dossier_pk", sa.BigInteger(), nullable=False),
        sa.Column("representative_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("family_name", sa.String(length=200), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("contact", sa.LargeBinary(), nullable=False),
        sa.Column("account_subject", sa.String(length=128), nullable=False),
        sa.Column("access_end_time", UTCDateTime, nullable=True),
        sa.ForeignKeyConstraint(["dossier_pk"], ["dossiers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("representative_id"),
    )
    op.create_index("ix_representatives_dossier", "representatives", ["dossier_pk"], unique=False)
    op.create_index("ix_representatives_ins", "representatives", ["ins"], unique=False)
    op.create_table(
        "vaccinations",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("vaccination_id", sa.String(length=32), nullable=False),
        sa.Column("dossier_pk", sa.BigInteger(), nullable=False),
        sa.Column("administration_date", sa.String(length=10), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(["dossier_pk"], ["dossiers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dossier_pk", "dedup_key", name="uq_vaccinations_dedup"),
        sa.UniqueConstraint("vaccination_id"),
    )
    op.create_index(
        "ix_vaccinations_dossier_date",
        "vaccinations",
        ["dossier_pk", "administration_date", "id"],
        unique=False,
    )
    op.create_table(
        "document_contents",
        sa.Column("document_pk", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["document_pk"], ["documents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("document_pk"),
    )

    if op.get_bind().dialect.name == "postgresql":
        # Lexemes only (French stemming): the index never holds the readable text.
        op.execute(
            "CREATE TABLE document_search ("
            " document_pk BIGINT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,"
            " dossier_pk BIGINT NOT NULL,"
            " tsv TSVECTOR NOT NULL)"
        )
        op.execute("CREATE INDEX ix_document_search_tsv ON document_search USING GIN (tsv)")
        op.execute("CREATE INDEX ix_document_search_dossier ON document_search (dossier_pk)")
    else:
        # Contentless FTS5: the inverted index only, rowid = documents.id.
        op.execute(
            "CREATE VIRTUAL TABLE document_fts USING fts5("
            "body, content='', tokenize='unicode61 remove_diacritics 2')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE document_search")
    else:
        op.execute("DROP TABLE document_fts")
    op.drop_table("document_contents")
    op.drop_index("ix_vaccinations_dossier_date", table_name="vaccinations")
    op.drop_table("vaccinations")
    op.drop_index("ix_representatives_ins", table_name="representatives")
    op.drop_index("ix_representatives_dossier", table_name="representatives")
    op.drop_table("representatives")
    op.drop_index("ix_profile_items_dossier", table_name="profile_items")
    op.drop_table("profile_items")
    op.drop_index("ix_documents_dossier_sort", table_name="documents")
    op.drop_index("ix_documents_dossier_created", table_name="documents")
    op.drop_table("documents")
    op.drop_index("ix_request_ids_dossier", table_name="request_ids")
    op.drop_table("request_ids")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_dossiers_state_close", table_name="dossiers")
    op.drop_table("dossiers")
