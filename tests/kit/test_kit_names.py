"""kit.names: one reason for a malformed resource name, one syntax for a record's name."""

from __future__ import annotations

import grpc
import pytest

from kit import names
from kit.errors import ServiceError


@pytest.mark.parametrize("value", ["dossiers/d1", "dossiers/" + "a" * 64, "dossiers/a.b_c~d-e"])
def test_record_names(value: str) -> None:
    assert names.parse(names.DOSSIER, value, "Expected dossiers/{dossier}.").group(1) == value[9:]


@pytest.mark.parametrize(
    "value", ["", "dossiers/", "dossiers/" + "a" * 65, "dossiers/a/b", "records/1", "dossiers/é"]
)
def test_a_malformed_name_is_invalid_name(value: str) -> None:
    with pytest.raises(ServiceError) as exc:
        names.parse(names.DOSSIER, value, "Expected dossiers/{dossier}.", "parent")
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.reason == "INVALID_NAME"
    assert exc.value.field_violations == {"parent": "Expected dossiers/{dossier}."}
