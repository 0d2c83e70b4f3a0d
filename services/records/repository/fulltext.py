"""SQL of the full-text index: PostgreSQL `tsvector` ('french'), SQLite FTS5.

The index tables differ per backend and are created by the migration only, so
they are queried here with SQL text. PostgreSQL keeps only French lexemes;
SQLite uses a contentless FTS5 table (index only). Neither keeps the readable
text. Deleting a row of a contentless FTS5 table needs the indexed text again
(`needs_bodies_to_forget`), which `search.forget_dossier` rebuilds.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    column,
    func,
    literal_column,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import invalid_argument
from services.records.models import documents

pg_search = table("document_search", column("document_pk"), column("dossier_pk"), column("tsv"))
fts = table("document_fts", column("rowid"), column("rank"))

_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def needs_bodies_to_forget(session: AsyncSession) -> bool:
    return not is_postgres(session)


async def add(session: AsyncSession, doc_pk: int, dossier_pk: int, title: str, body: str) -> None:
    """Index one document; on PostgreSQL the title weighs more than the body."""
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


async def forget_dossier(session: AsyncSession, dossier_pk: int) -> None:
    """PostgreSQL: drop a record's index rows (SQLite: `forget_document` each one)."""
    await session.execute(
        text("DELETE FROM document_search WHERE dossier_pk = :dpk"), {"dpk": dossier_pk}
    )


async def forget_document(session: AsyncSession, doc_pk: int, body: str) -> None:
    """SQLite: drop one document from the contentless index, given the text it indexed."""
    await session.execute(
        text("INSERT INTO document_fts (document_fts, rowid, body) VALUES ('delete', :pk, :body)"),
        {"pk": doc_pk, "body": body},
    )


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


def match_clause(
    session: AsyncSession, query: str, dossier_pk: int
) -> tuple[FromClause, ColumnElement[float], ColumnElement[bool]]:
    """(from-clause to join, score expression, where-clause) for this backend."""
    d = documents.c
    if is_postgres(session):
        tsq = func.websearch_to_tsquery(literal_column("'french'"), query)
        joined = documents.join(pg_search, pg_search.c.document_pk == d.id)
        score: ColumnElement[float] = func.ts_rank(pg_search.c.tsv, tsq, type_=Float)
        where = (pg_search.c.dossier_pk == dossier_pk) & pg_search.c.tsv.op("@@")(tsq)
        return joined, score, where
    joined = documents.join(fts, fts.c.rowid == d.id)
    score = -fts.c.rank
    where = literal_column("document_fts").op("MATCH")(fts5_query(query)) & (
        d.dossier_pk == dossier_pk
    )
    return joined, score, where
