"""Schema of the records service (SQLAlchemy Core tables).

Content and health data are stored sealed with the record's data key (see
`crypto.py`); metadata stays in clear so listings, filters and scope checks run
in SQL. The full-text index (`document_search` on PostgreSQL, `document_fts`
FTS5 on SQLite) is created by the migration only, because its column types
differ per backend; `repository/fulltext.py` queries it with SQL text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kit.db import BigIntPK, UTCDateTime
from kit.idempotency import processed_requests_table
from kit.outbox import outbox_table

metadata = MetaData()

dossiers = Table(
    "dossiers",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("dossier_id", String(32), nullable=False, unique=True),
    Column("patient_ins", String(15), nullable=False, unique=True),
    Column("identity", LargeBinary, nullable=False),
    Column("contact", LargeBinary, nullable=False),
    Column("birth_date", String(10), nullable=True),
    Column("state", Integer, nullable=False),
    Column("creation_channel", Integer, nullable=False),
    Column("creator", String(128), nullable=False),
    Column("accepted_terms_version", String(32), nullable=False, default=""),
    Column("terms_accept_time", UTCDateTime, nullable=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("close_time", UTCDateTime, nullable=True),
    Column("close_reason", Integer, nullable=False, default=0),
    Column("close_comment", Text, nullable=False, default=""),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("revision", Integer, nullable=False, default=1),
    Column("profile_revision", Integer, nullable=False, default=0),
    Column("profile_update_time", UTCDateTime, nullable=True),
    # FINESS or SIRET a professional declared at creation (CountDossierCreations).
    Column("creator_institution", String(32), nullable=False, server_default=""),
    Index("ix_dossiers_state_close", "state", "close_time"),
    Index("ix_dossiers_channel_create", "creation_channel", "create_time"),
)

representatives = Table(
    "representatives",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("dossier_pk", BigInteger, ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("representative_id", String(32), nullable=False, unique=True),
    Column("role", Integer, nullable=False),
    Column("family_name", String(200), nullable=False),
    Column("given_name", String(200), nullable=False),
    Column("ins", String(15), nullable=False, default=""),
    Column("contact", LargeBinary, nullable=False),
    Column("account_subject", String(128), nullable=False, default=""),
    Column("access_end_time", UTCDateTime, nullable=True),
    Index("ix_representatives_dossier", "dossier_pk"),
    Index("ix_representatives_ins", "ins"),
)

documents = Table(
    "documents",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("document_id", String(32), nullable=False, unique=True),
    Column("dossier_pk", BigInteger, ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("unique_id", String(128), nullable=True, unique=True),
    Column("type_code", String(32), nullable=False),
    Column("class_code", String(8), nullable=False),
    Column("title", String(255), nullable=False),
    Column("author", LargeBinary, nullable=False),
    Column("author_rpps", String(16), nullable=False, default=""),
    Column("author_subject", String(128), nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("service_start_time", UTCDateTime, nullable=True),
    Column("service_stop_time", UTCDateTime, nullable=True),
    # service_start_time, or create_time when absent: the non-null keyset sort key.
    Column("sort_time", UTCDateTime, nullable=False),
    Column("practice_setting_code", String(32), nullable=False, default=""),
    Column("facility_type_code", String(32), nullable=False, default=""),
    Column("format", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("masque_ps", Boolean, nullable=False, default=False),
    Column("invisible_patient", Boolean, nullable=False, default=False),
    Column("invisible_representants", Boolean, nullable=False, default=False),
    Column("release_time", UTCDateTime, nullable=True),
    Column("status", Integer, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("replaces_id", String(32), nullable=True),
    Column("replaced_by_id", String(32), nullable=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("archive_time", UTCDateTime, nullable=True),
    Column("delete_time", UTCDateTime, nullable=True),
    Column("delete_reason", Text, nullable=False, default=""),
    Column("revision", Integer, nullable=False, default=1),
    Index("ix_documents_dossier_sort", "dossier_pk", "sort_time", "id"),
    Index("ix_documents_dossier_created", "dossier_pk", "create_time", "id"),
)

document_contents = Table(
    "document_contents",
    metadata,
    Column(
        "document_pk",
        BigInteger,
        ForeignKey("documents.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("sealed", LargeBinary, nullable=False),
)

profile_items = Table(
    "profile_items",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("dossier_pk", BigInteger, ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("item_id", String(32), nullable=False, unique=True),
    Column("section", String(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("removed", Boolean, nullable=False, default=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Index("ix_profile_items_dossier", "dossier_pk", "section"),
)

# Every revision of a record's advance directives, newest = current (AIP-162):
# a change adds a row, nothing is overwritten. `sealed` is the AdvanceDirectives
# message sealed with the record's data key, bound to `seal_id`.
advance_directive_revisions = Table(
    "advance_directive_revisions",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("dossier_pk", BigInteger, ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("seal_id", String(32), nullable=False, unique=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    UniqueConstraint("dossier_pk", "revision", name="uq_advance_directive_revisions_revision"),
)

vaccinations = Table(
    "vaccinations",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("vaccination_id", String(32), nullable=False, unique=True),
    Column("dossier_pk", BigInteger, ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
    Column("administration_date", String(10), nullable=False),
    Column("dedup_key", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    UniqueConstraint("dossier_pk", "dedup_key", name="uq_vaccinations_dedup"),
    Index("ix_vaccinations_dossier_date", "dossier_pk", "administration_date", "id"),
)

processed_requests = processed_requests_table(
    metadata,
    Column("dossier_pk", BigInteger, nullable=True),
    Index("ix_processed_requests_dossier_pk", "dossier_pk"),
)

outbox = outbox_table(metadata)
