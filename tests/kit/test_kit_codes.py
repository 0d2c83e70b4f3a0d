"""kit.codes: every shipped code table loads and is internally consistent."""

from __future__ import annotations

import pytest

from kit import codes


@pytest.mark.parametrize("name", codes.TABLES)
def test_table_loads_with_codes_and_labels(name: str) -> None:
    table = codes.table(name)
    assert table, f"{name} is empty"
    for code, entry in table.items():
        assert code == entry.code
        assert code
        assert code.strip() == code
        assert entry.label
        assert entry.label.strip() == entry.label


def test_document_type_classes_are_known_classes() -> None:
    # A few types have no class in the ANS concept map (ASS_X16): their class_code is empty.
    classes = codes.table("document_classes")
    mapped = [codes.document_class_of(code) for code in codes.table("document_types")]
    assert all(c in classes for c in mapped if c)
    assert sum(1 for c in mapped if c) > len(mapped) * 0.9


def test_lookups() -> None:
    assert codes.is_valid("professions", "10")
    assert codes.profession_label("10") == "Médecin"
    assert not codes.is_valid("professions", "does-not-exist")
    with pytest.raises(KeyError):
        codes.table("no_such_table")
