"""What the full-text index holds for a document, and the search query's rules.

The index holds what a search may match: title, type label, author and the
text extracted at upload (CDA narrative, text/plain); never the readable text
itself (`repository.fulltext`). Snippets are built from the title only.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit import codes
from kit.errors import invalid_argument
from services.records import content as content_checks
from services.records.keys import data_key, open_content
from services.records.repository import documents, fulltext
from services.records.repository.rows import DossierRow
from services.records.settings import RecordsSettings

MAX_QUERY_CHARS = 256


def author_display(author_bytes: bytes) -> str:
    author = records_pb2.Author.FromString(author_bytes)
    return " ".join(p for p in (author.display_name, author.institution_name) if p)


def index_body(title: str, type_code: str, author: str, extracted: str) -> str:
    label = codes.table("document_types").get(type_code)
    return " ".join(p for p in (title, label.label if label else "", author, extracted) if p)


async def index(
    session: AsyncSession,
    doc_pk: int,
    dossier_pk: int,
    *,
    title: str,
    type_code: str,
    author: bytes,
    extracted: str,
) -> None:
    body = index_body(title, type_code, author_display(author), extracted)
    await fulltext.add(session, doc_pk, dossier_pk, title, body)


async def forget_dossier(
    session: AsyncSession, dossier_row: DossierRow, settings: RecordsSettings
) -> None:
    """Remove a record's documents from the index (purge)."""
    if not fulltext.needs_bodies_to_forget(session):
        await fulltext.forget_dossier(session, dossier_row.id)
        return
    dek = data_key(dossier_row, settings)
    for row, sealed in await documents.with_contents(session, dossier_row.id):
        plain = open_content(dek, sealed, row.document_id)
        body = index_body(
            row.title,
            row.type_code,
            author_display(row.author),
            content_checks.check(row.format, plain),
        )
        await fulltext.forget_document(session, row.id, body)


def check_query(query: str) -> str:
    query = query.strip()
    if not query:
        raise invalid_argument("QUERY_REQUIRED", "A search query is required.", "query")
    if len(query) > MAX_QUERY_CHARS:
        raise invalid_argument("QUERY_TOO_LONG", "The query is too long.", "query")
    return query


def highlighted_terms(query: str) -> list[str]:
    """Words of the query that are not excluded (what a snippet highlights)."""
    return fulltext.query_terms(query)


def snippet(title: str, terms: list[str]) -> str:
    """The title with matching words wrapped in « » (a metadata-only extract)."""
    if not terms:
        return title
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(t[:6]) + r"\w*" for t in terms) + r")", re.IGNORECASE
    )
    return pattern.sub(lambda m: f"«{m.group(1)}»", title)
