"""The project's own code tables (professions, specialties, document types…).

They ship inside the package as CSV files so a user's machine needs nothing
else; `tests/test_nomenclatures.py` checks them against the official
reference in ../shared/data/nomenclatures/ whenever it is present.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

TABLES = (
    "access_modes",
    "author_specialties",
    "confidentiality",
    "document_classes",
    "document_types",
    "healthcare_facility_types",
    "practice_settings",
    "professions",
    "specialties",
)


@dataclass(frozen=True)
class Code:
    """One code of a table; `extra` holds the table's other columns (e.g. class_code)."""

    code: str
    label: str
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, column: str) -> str:
        return dict(self.extra).get(column, "")


@cache
def table(name: str) -> dict[str, Code]:
    """Codes of table `name`, keyed by code."""
    if name not in TABLES:
        raise KeyError(f"unknown code table {name!r}")
    text = resources.files("kit.nomenclatures").joinpath(f"{name}.csv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines())
    out: dict[str, Code] = {}
    for row in rows:
        code = row.pop("code")
        label = row.pop("label")
        out[code] = Code(code, label, tuple(sorted(row.items())))
    return out


def is_valid(name: str, code: str) -> bool:
    return code in table(name)


def profession_label(code: str) -> str:
    return table("professions")[code].label


def document_class_of(type_code: str) -> str:
    """Class code derived from a document type code (never trusted from a client)."""
    return table("document_types")[type_code].get("class_code")
