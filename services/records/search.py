"""Full-text index of documents: PostgreSQL `tsvector` ('french'), SQLite FTS5.

The index holds what a search may match: title, type label, author and the
text extracted at upload (CDA narrative, text/plain). PostgreSQL keeps only
French lexemes; SQLite uses a contentless FTS5 table (index only). Neither
keeps the readable text. Deleting a row of a contentless FTS5 table needs the
indexed text again, so the purge rebuilds it from the decrypted content.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from kit import codes
from kit.errors import invalid_argument
from services.records import content as content_checks
from services.records.models import document_contents, documents
from services.records.settings import RecordsSettings

MAX_QUERY_CHARS = 256

pg_search = table("document_search", column("document_pk"), column("dossier_pk"), column("tsv"))
fts = table("document_fts", column("rowid"), column("rank"))

_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def index_body(title: str, type_code: str, author_display: str, extracted: str) -> str:
    label = codes.table("document_types").get(type_code)
    return " ".join(
        p for p in (title, label.label if label else "", author_display, extracted) if p
    )


async def index(session: AsyncSession, doc_pk: int, dossier_pk: int, title: str, body: str) -> None:
    if is_postgres(session):
        await session.execute(
            text(
                "INSERT INTO document_search (document_pk, dossier_pk, tsv) VALUES "
                "(:pk, :dpk, setweight(to_tsvector('french', :title), 'A') "
                "|| to_tsvector('french', :body))"
            ),
            {"pk": doc_pk, "dpk": dossier_pk, "title": title, "body": body},
        )
    else:
        await session.execute(
            text("INSERT INTO document_fts (rowid, body) VALUES (:pk, :body)"),
            {"pk": doc_pk, "body": body},
        )


async def forget_dossier(
    session: AsyncSession, dossier_row: Any, settings: RecordsSettings
) -> None:
    """Remove a record's documents from the index (purge)."""
    if is_postgres(session):
        await session.execute(
            text("DELETE FROM document_search WHERE dossier_pk = :dpk"), {"dpk": dossier_row.id}
        )
        return
    from services.records.documents import author_display
    from services.records.store import data_key, open_content

    dek = data_key(dossier_row, settings)
    rows = (
        await session.execute(
            select(documents, document_contents.c.sealed)
            .join(document_contents, document_contents.c.document_pk == documents.c.id)
            .where(documents.c.dossier_pk == dossier_row.id)
        )
    ).all()
    for row in rows:
        plain = open_content(dek, row.sealed, row.document_id)
        body = index_body(
            row.title,
            row.type_code,
            author_display(row.author),
            content_checks.check(row.format, plain),
        )
        await session.execute(
            text(
                "INSERT INTO document_fts (document_fts, rowid, body) VALUES ('delete', :pk, :body)"
            ),
            {"pk": row.id, "body": body},
        )


def check_query(query: str) -> str:
    query = query.strip()
    if not query:
        raise invalid_argument("QUERY_REQUIRED", "A search query is required.", "query")
    if len(query) > MAX_QUERY_CHARS:
        raise invalid_argument("QUERY_TOO_LONG", "The query is too long.", "query")
    return query


def fts5_query(query: str) -> str:
    """User syntax (words, "phrases", -excluded) as a safe FTS5 expression."""
    positive: list[str] = []
    negative: list[str] = []
    for m in _TOKEN.finditer(query):
        neg = bool(m.group(1) or m.group(3))
        raw = m.group(2) if m.group(2) is not None else m.group(4)
        words = _WORD.findall(raw)
        if not words:
            continue
        if m.group(2) is not None:
            term = '"' + " ".join(words) + '"'
        else:
            term = " AND ".join(f'"{w}"*' for w in words)
        (negative if neg else positive).append(term)
    if not positive:
        raise invalid_argument("QUERY_REQUIRED", "The query has no word to look for.", "query")
    expr = " AND ".join(positive)
    for term in negative:
        expr = f"({expr}) NOT {term}"
    return expr


def query_terms(query: str) -> list[str]:
    """Words of the query that are not excluded, for snippets."""
    out: list[str] = []
    for m in _TOKEN.finditer(query):
        if m.group(1) or m.group(3):
            continue
        raw = m.group(2) if m.group(2) is not None else m.group(4)
        out.extend(w for w in _WORD.findall(raw) if len(w) > 1)
    return out


def snippet(title: str, terms: list[str]) -> str:
    """The title with matching words wrapped in « » (a metadata-only extract)."""
    if not terms:
        return title
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(t[:6]) + r"\w*" for t in terms) + r")", re.IGNORECASE
    )
    return pattern.sub(lambda m: f"«{m.group(1)}»", title)


def match_clause(
    session: AsyncSession, query: str, dossier_pk: int
) -> tuple[Any, ColumnElement[Any], ColumnElement[bool]]:
    """(from-clause to join, score expression, where-clause) for this backend."""
    d = documents.c
    if is_postgres(session):
        tsq = func.websearch_to_tsquery(literal_column("'french'"), query)
        joined = documents.join(pg_search, pg_search.c.document_pk == d.id)
        score: ColumnElement[Any] = func.ts_rank(pg_search.c.tsv, tsq)
        where = (pg_search.c.dossier_pk == dossier_pk) & pg_search.c.tsv.op("@@")(tsq)
        return joined, score, where
    joined = documents.join(fts, fts.c.rowid == d.id)
    score = -fts.c.rank
    where = literal_column("document_fts").op("MATCH")(fts5_query(query)) & (
        d.dossier_pk == dossier_pk
    )
    return joined, score, where
