"""RPPS numbers (Répertoire partagé des professionnels de santé): one rule for every service.

An RPPS number is 11 ASCII digits: `validate` refuses anything else as INVALID_ARGUMENT
`INVALID_RPPS` (full-width digits and a trailing newline included, which `\\d{11}` and
`re.match(...$)` let through before). That is the rule wherever an RPPS arrives as a
reference to someone: a consent filter, an AMO claim line's prescriber.

The numbers the ANS issues end with a Luhn check digit, and identity's directory, where a
number enters the platform, also checks it (`validate_issued`, INVALID_ARGUMENT
`RPPS_CHECK_DIGIT`). The other services do not: the AMO feed and the test and benchmark
data carry numbers without a valid check digit (`10000000001`…), and refusing them there
would refuse claim lines and filters the platform accepts today.
"""

from __future__ import annotations

import re

from kit.errors import invalid_argument

#: The shape, for code that checks many values without raising (claim-line validation).
SHAPE = re.compile(r"[0-9]{11}")


def luhn_valid(digits: str) -> bool:
    """Whether the last digit of `digits` is their Luhn check digit."""
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
    """The Luhn digit completing `first_ten` (tooling and tests make valid numbers with it)."""
    for candidate in "0123456789":
        if luhn_valid(first_ten + candidate):
            return candidate
    raise AssertionError("unreachable: one Luhn digit always fits")


def validate(value: str, field: str = "rpps") -> str:
    """The RPPS, or INVALID_ARGUMENT INVALID_RPPS unless it is 11 ASCII digits."""
    if SHAPE.fullmatch(value) is None:
        raise invalid_argument("INVALID_RPPS", "An RPPS number is 11 digits.", field)
    return value


def validate_issued(value: str, field: str = "rpps") -> str:
    """`validate`, and the Luhn check digit (INVALID_ARGUMENT RPPS_CHECK_DIGIT)."""
    validate(value, field)
    if not luhn_valid(value):
        raise invalid_argument("RPPS_CHECK_DIGIT", "The RPPS check digit does not match.", field)
    return value
