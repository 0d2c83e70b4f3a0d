"""INS (Identifiant National de Santé) as used for patients: the 13-character
NIR followed by its 2-digit control key, key = 97 − (NIR mod 97).

Shape accepted (positions 1-based):
- 1: sex digit 1 or 2 (NIR), 3 or 4 (special cases of the registry), 7 or 8
  (NIA, temporary numbers of people being registered);
- 2-3: year of birth, any two digits;
- 4-5: month 01-12, or 20-42 and 50-99 (fictitious months the registry uses
  when the month of birth is unknown);
- 6-7: department: two digits, or 2A / 2B for Corsica (births since 1976);
- 8-13: commune and order number, six digits;
- 14-15: key 01-97.
For the key, Corsica's 2A counts as 19 and 2B as 18 (the NIR with "20" minus
1 000 000 or 2 000 000). Spaces are ignored; letters are upper-cased.
"""

from __future__ import annotations

import re

from kit.errors import invalid_argument

_SHAPE = re.compile(r"[123478]\d{2}(0[1-9]|1[0-2]|[2-3]\d|4[0-2]|[5-9]\d)(\d{2}|2A|2B)\d{8}")


def normalize(value: str) -> str:
    return value.replace(" ", "").upper()


def nir_number(nir: str) -> int:
    """The 13-character NIR as the integer the key is computed on."""
    if nir[5:7] == "2A":
        nir = nir[:5] + "19" + nir[7:]
    elif nir[5:7] == "2B":
        nir = nir[:5] + "18" + nir[7:]
    return int(nir)


def control_key(nir: str) -> int:
    return 97 - nir_number(nir) % 97


def with_key(nir: str) -> str:
    """The INS of a 13-character NIR (fixtures, demos and benchmarks make fresh patients)."""
    return f"{nir}{control_key(nir):02d}"


def validate(value: str, field: str = "ins") -> str:
    """The normalized INS, or INVALID_ARGUMENT INS_MALFORMED / INS_KEY_MISMATCH."""
    ins = normalize(value)
    if len(ins) != 15 or not _SHAPE.fullmatch(ins):
        raise invalid_argument(
            "INS_MALFORMED", "The INS must be 15 characters: NIR (13) and key (2).", field
        )
    if int(ins[13:]) != control_key(ins[:13]):
        raise invalid_argument("INS_KEY_MISMATCH", "The INS control key does not match.", field)
    return ins
