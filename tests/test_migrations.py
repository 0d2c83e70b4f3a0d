"""Every service's migrations: up to the head in step with its models, down to nothing, up again.

One test per service with migrations (the launcher's catalog), on the run's backend:

- after `upgrade head` the database holds exactly the models' tables, the service's Alembic
  version table and what its migrations create outside the models (`OUTSIDE_MODELS`);
  Alembic's autogenerate comparison (`compare_metadata`) finds no difference with the
  models; every column has the models' nullability and every unique constraint of the
  models exists (checked on their own: the comparison is lenient about both on SQLite);
- after `downgrade base` none of them is left but the version table;
- `upgrade head` again gives the same tables, and the comparison finds no difference.

Data migrations (rows kept by a revision, both ways) have their own tests next to their
service (tests/<service>/test_*migrations*.py).
"""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import MetaData, Table, UniqueConstraint
from sqlalchemy.engine import Inspector

from dmp_cli import catalog
from dmp_dev.testing.databases import DatabaseFactory
from kit import migrations
from tests.fixtures import sql

SERVICES = [spec.name for spec in catalog.available() if spec.has_migrations()]

# Tables a service's migrations create in SQL its models cannot express, per backend:
# records' full-text index (services/records/models.py).
OUTSIDE_MODELS: dict[str, dict[str, set[str]]] = {
    "records": {
        "postgresql": {"document_search"},
        "sqlite": {
            "document_fts",
            "document_fts_config",
            "document_fts_data",
            "document_fts_docsize",
            "document_fts_idx",
        },
    },
}


def models_of(service: str) -> MetaData:
    metadata: MetaData = importlib.import_module(f"services.{service}.models").metadata
    return metadata


def unique_sets(table: Table) -> set[frozenset[str]]:
    """Column sets the model declares unique (constraints and unique columns)."""
    found = {
        frozenset(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    found |= {frozenset((c.name,)) for c in table.columns if c.unique}
    found |= {frozenset(c.name for c in i.columns) for i in table.indexes if i.unique}
    return found


def read_shape(
    inspector: Inspector, tables: list[str]
) -> tuple[dict[str, dict[str, bool]], dict[str, set[frozenset[str]]]]:
    """Nullability per column and unique column sets of the migrated tables."""
    nullable = {
        name: {c["name"]: bool(c["nullable"]) for c in inspector.get_columns(name)}
        for name in tables
    }
    unique: dict[str, set[frozenset[str]]] = {}
    for name in tables:
        sets = {frozenset(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        sets |= {frozenset(i["column_names"]) for i in inspector.get_indexes(name) if i["unique"]}
        unique[name] = sets
    return nullable, unique


async def assert_at_head(url: str, service: str, kind: str, *, shape: bool = True) -> None:
    metadata = models_of(service)
    outside = OUTSIDE_MODELS.get(service, {}).get(kind, set())
    expected = set(metadata.tables) | {migrations.version_table(service)} | outside
    assert await sql.table_names(url) == expected
    assert await sql.schema_diff(url, service, metadata, ignore=outside) == []
    if not shape:
        return
    tables = sorted(metadata.tables)
    nullable, unique = await sql.inspect_tables(url, lambda i: read_shape(i, tables))
    for name, table in metadata.tables.items():
        assert nullable[name] == {c.name: bool(c.nullable) for c in table.columns}, name
        missing = {
            tuple(sorted(columns))
            for columns in unique_sets(table)
            if columns not in unique[name] and not _primary_key(table, columns)
        }
        assert not missing, (name, missing)


def _primary_key(table: Table, columns: frozenset[str]) -> bool:
    return columns == frozenset(c.name for c in table.primary_key.columns)


@pytest.mark.parametrize("service", SERVICES)
async def test_upgrade_matches_the_models_downgrade_empties_upgrade_again(
    databases: DatabaseFactory, service: str
) -> None:
    url = await databases.create(f"{service}_migrations")
    await migrations.upgrade(service, url)
    await assert_at_head(url, service, databases.kind)
    await migrations.downgrade(service, url, "base")
    assert await sql.table_names(url) <= {migrations.version_table(service)}
    await migrations.upgrade(service, url)
    await assert_at_head(url, service, databases.kind, shape=False)  # same tables, no diff


def test_every_service_with_migrations_is_covered() -> None:
    assert set(SERVICES) == {"identity", "records", "consent", "notify", "history_feed"}
