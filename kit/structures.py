"""The institution where care takes place: a FINESS number (`kit.finess`) or a SIRET.

A professional declares it when creating a record at the counter (a pharmacy's FINESS) or in
a practice (its SIRET, 14 digits with a Luhn key). A 9-digit value is a FINESS and answers
`kit.finess`'s reasons (INVALID_FINESS, FINESS_CHECK_DIGIT); a 14-digit value is a SIRET
(`SIRET_CHECK_DIGIT` on a wrong key); anything else is INVALID_ARGUMENT
`INVALID_INSTITUTION_ID`.
"""

from __future__ import annotations

import re

from kit import finess
from kit.errors import invalid_argument
from kit.rpps import luhn_valid

SIRET = re.compile(r"[0-9]{14}")


def validate_institution(value: str, field: str = "institution_id") -> str:
    """`value` (surrounding spaces dropped) if it is a FINESS or a SIRET, else the refusal."""
    text = value.strip()
    if SIRET.fullmatch(text):
        if not luhn_valid(text):
            raise invalid_argument(
                "SIRET_CHECK_DIGIT", "The SIRET check digit does not match.", field
            )
        return text
    if finess.SHAPE.fullmatch(text):
        return finess.validate(text, field)
    raise invalid_argument(
        "INVALID_INSTITUTION_ID", "Expected a FINESS (9 digits) or a SIRET (14 digits).", field
    )
