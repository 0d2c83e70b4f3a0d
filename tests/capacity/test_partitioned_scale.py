"""bench/partitioned_scale.py: the DDL it derives from the services' models keeps every
uniqueness PostgreSQL can enforce on a hash-partitioned table (the partition key in each
primary key and unique constraint), and its `--quick` run works end to end on PostgreSQL
(tables, partitions, load, indexes, the services' own queries, checked answers, pruning to
one partition), so the committed 10 M-row measurement stays reproducible."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from dmp_dev.testing.databases import PG_ADMIN_DSN, backend
from services.consent.models import access_log
from services.records.models import documents

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "partitioned_scale.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("partitioned_scale", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_partitioned_ddl_puts_the_record_key_in_every_key_and_unique_constraint() -> None:
    bench = _bench()
    table, after = bench.partitioned_model(documents, "dossier_pk", "s")
    assert table.dialect_options["postgresql"]["partition_by"] == "HASH (dossier_pk)"
    assert not table.foreign_keys
    assert after[0] == 'ALTER TABLE "s"."documents" ADD PRIMARY KEY (id, dossier_pk)'
    uniques = sorted(s for s in after if " UNIQUE " in s)
    assert uniques == [
        'ALTER TABLE "s"."documents" ADD CONSTRAINT uq_documents_document_id'
        " UNIQUE (dossier_pk, document_id)",
        'ALTER TABLE "s"."documents" ADD CONSTRAINT uq_documents_unique_id'
        " UNIQUE (dossier_pk, unique_id)",
    ]
    # The model's own indexes, unchanged (they already lead with the record).
    assert (
        'CREATE INDEX ix_documents_dossier_sort ON "s"."documents" (dossier_pk, sort_time, id)'
        in after
    )
    _, log_after = bench.partitioned_model(access_log, "dossier", "s")
    assert 'ALTER TABLE "s"."access_log" ADD PRIMARY KEY (id, dossier)' in log_after
    assert (
        'ALTER TABLE "s"."access_log" ADD CONSTRAINT uq_access_log_dossier_sequence'
        " UNIQUE (dossier, sequence)"
    ) in log_after
    assert (
        'ALTER TABLE "s"."access_log" ADD CONSTRAINT uq_access_log_entry_id'
        " UNIQUE (dossier, entry_id)"
    ) in log_after


@pytest.mark.skipif(
    backend() != "postgresql",
    reason="hash partitioning and the bench's load (generate_series, tsvector) are PostgreSQL's",
)
def test_quick_run_builds_measures_and_drops_its_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _bench()
    args = argparse.Namespace(quick=True, partitions=4, rounds=10, warm=3, chunk=1_000_000)
    result = asyncio.run(bench.main(args))
    assert result["quick"] is True
    assert result["errors"] == 0
    assert result["rows"] == 10_000
    assert result["rows_small"] == 1_000
    assert result["partitions"] == 4
    assert result["pruning"] == {"list_partitions_scanned": 1}
    for size, rows in (("small", 1_000), ("large", 10_000)):
        for table in ("documents", "document_search", "access_log"):
            assert result["sizes"][size][table]["rows"] == rows
            assert result["sizes"][size][table]["total_bytes"] > 0
    for op in ("list", "search", "access_history"):
        assert len(result["large"]) == 6
        assert result[f"{op}_p99_ratio"] > 0
    database = capsys.readouterr().out.split("database ", 1)[1].split()[0]
    assert database.startswith("dmp_bench_partitioned_")
    assert not asyncio.run(_exists(database)), "the bench left its database behind"


async def _exists(database: str) -> bool:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await conn.close()
