"""kit.rpps: one RPPS rule (11 ASCII digits, INVALID_RPPS); the Luhn digit where numbers enter."""

from __future__ import annotations

import grpc
import pytest

from kit import rpps
from kit.errors import ServiceError


@pytest.mark.parametrize(
    "value", ["", "1000000000", "100000000060", "1000000000a", "１0000000006", "10000000009\n"]
)
def test_not_eleven_ascii_digits_is_invalid_rpps(value: str) -> None:
    with pytest.raises(ServiceError) as exc:
        rpps.validate(value, "professional_rpps")
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.reason == "INVALID_RPPS"
    assert exc.value.field_violations == {"professional_rpps": "An RPPS number is 11 digits."}


def test_the_shape_alone_accepts_numbers_without_a_valid_check_digit() -> None:
    # AMO claim lines and consent filters carry such numbers today (10000000001 in fixtures).
    assert rpps.validate("10000000001") == "10000000001"
    with pytest.raises(ServiceError) as exc:
        rpps.validate_issued("10000000001")
    assert exc.value.reason == "RPPS_CHECK_DIGIT"


def test_check_digit_completes_a_number() -> None:
    for prefix in ("1000000000", "8101234567"):
        assert rpps.luhn_valid(prefix + rpps.check_digit(prefix))
