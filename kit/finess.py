"""FINESS numbers (Fichier national des établissements sanitaires et sociaux): one rule.

A FINESS number is 9 ASCII digits: the first two name the département, the last one is a
Luhn check digit over the first eight (the same key as RPPS numbers, `kit.rpps`). Anything
else is INVALID_ARGUMENT `INVALID_FINESS`; a wrong key is `FINESS_CHECK_DIGIT`. Corsican
numbers written with "2A"/"2B" are not accepted (the directory stores the numeric form).
"""

from __future__ import annotations

import re

from kit.errors import invalid_argument
from kit.rpps import luhn_valid

SHAPE = re.compile(r"[0-9]{9}")


def check_digit(first_eight: str) -> str:
    """The Luhn digit completing `first_eight` (tooling and tests make valid numbers)."""
    for candidate in "0123456789":
        if luhn_valid(first_eight + candidate):
            return candidate
    raise AssertionError("unreachable: one Luhn digit always fits")


def valid(value: str) -> bool:
    """Whether `value` is a FINESS number with its check digit (no exception)."""
    return SHAPE.fullmatch(value) is not None and luhn_valid(value)


def validate(value: str, field: str = "finess") -> str:
    """The FINESS number, or INVALID_ARGUMENT INVALID_FINESS / FINESS_CHECK_DIGIT."""
    if SHAPE.fullmatch(value) is None:
        raise invalid_argument("INVALID_FINESS", "A FINESS number is 9 digits.", field)
    if not luhn_valid(value):
        raise invalid_argument(
            "FINESS_CHECK_DIGIT", "The FINESS check digit does not match.", field
        )
    return value
