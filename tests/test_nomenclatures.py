"""The code tables shipped in kit/nomenclatures match the official extracts in
../shared/data/nomenclatures (when that directory is present next to the repo)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kit import codes

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / ".." / "shared" / "data" / "nomenclatures"
SHIPPED = REPO / "kit" / "nomenclatures"

pytestmark = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference nomenclatures not found at {REFERENCE.resolve()}"
)


def _rows(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["code"]: row for row in reader}
        return list(reader.fieldnames or ()), rows


def test_every_reference_table_is_shipped() -> None:
    reference = sorted(p.stem for p in REFERENCE.glob("*.csv"))
    assert reference == sorted(codes.TABLES)


@pytest.mark.parametrize("name", codes.TABLES)
def test_table_matches_reference(name: str) -> None:
    ref_columns, reference = _rows(REFERENCE / f"{name}.csv")
    columns, shipped = _rows(SHIPPED / f"{name}.csv")
    required = {"code", "label"} | ({"class_code"} if name == "document_types" else set())
    assert required <= set(columns), f"{name}: missing columns {required - set(columns)}"
    assert sorted(shipped) == sorted(reference), f"{name}: codes differ"
    compared = [c for c in ref_columns if c in columns]
    assert required <= set(compared)
    differing = {
        code: column
        for code, row in reference.items()
        for column in compared
        if shipped[code][column] != row[column]
    }
    assert not differing, f"{name}: values differ for {differing}"
    # What the services actually load agrees with the file.
    assert {c: e.label for c, e in codes.table(name).items()} == {
        c: r["label"] for c, r in reference.items()
    }
