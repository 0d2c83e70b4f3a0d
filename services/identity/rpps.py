"""RPPS numbers: 11 digits whose last one is a Luhn check digit."""

from __future__ import annotations

from kit.errors import invalid_argument


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def check_digit(first_ten: str) -> str:
    """The Luhn digit completing `first_ten` (used by tooling and tests)."""
    for candidate in "0123456789":
        if luhn_valid(first_ten + candidate):
            return candidate
    raise AssertionError("unreachable: one Luhn digit always fits")


def validate(value: str, field: str = "rpps") -> str:
    """The RPPS, or INVALID_ARGUMENT RPPS_MALFORMED / RPPS_CHECK_DIGIT."""
    if len(value) != 11 or not value.isascii() or not value.isdigit():
        raise invalid_argument("RPPS_MALFORMED", "An RPPS number is 11 digits.", field)
    if not luhn_valid(value):
        raise invalid_argument("RPPS_CHECK_DIGIT", "The RPPS check digit does not match.", field)
    return value
