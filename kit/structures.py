"""Identifiers of health structures: FINESS (9 characters) and SIRET (14 digits).

A professional declares where care takes place (a pharmacy's FINESS at the counter, a
hospital's FINESS, a practice's SIRET); one refusal, INVALID_ARGUMENT
`INVALID_INSTITUTION_ID`, for every service that takes one.
"""

from __future__ import annotations

import re

from kit.errors import invalid_argument

#: FINESS: department (2 digits, or 2A / 2B for Corsica) then 7 digits.
FINESS = re.compile(r"(?:\d{2}|2A|2B)\d{7}")
#: SIRET: 14 digits.
SIRET = re.compile(r"\d{14}")


def validate_institution(value: str, field: str = "institution_id") -> str:
    """`value` (surrounding spaces dropped, letters upper-cased) if it is a FINESS or a
    SIRET, else INVALID_ARGUMENT INVALID_INSTITUTION_ID."""
    text = value.strip().upper()
    if FINESS.fullmatch(text) or SIRET.fullmatch(text):
        return text
    raise invalid_argument(
        "INVALID_INSTITUTION_ID", "Expected a FINESS (9 characters) or a SIRET (14 digits).", field
    )
