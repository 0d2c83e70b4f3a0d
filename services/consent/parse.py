"""Request fields consent reads: resource names and RPPS numbers.

Malformed values are INVALID_ARGUMENT with the field, before anything is read
or written. `patients/{ins}/dossier` is the one name resolved through the
record projection: a professional in front of the patient knows the INS.
"""

from __future__ import annotations

import re

from kit import ins as kit_ins
from kit import names
from kit import rpps as kit_rpps
from services.consent.cache import SnapshotCache
from services.consent.guard import no_record

_PATIENT_DOSSIER_RE = re.compile(r"patients/([0-9A-Za-z]{15})/dossier")
_DOSSIER_RE = re.compile(rf"(dossiers/{names.DOSSIER_ID})(?:/[^\n]*)?")
_RULE_RE = re.compile(rf"(dossiers/{names.DOSSIER_ID})/accessRules/([A-Za-z0-9-]{{1,64}})")


def dossier_of(value: str, field: str) -> str:
    """`dossiers/{dossier}` of a name that starts with it."""
    match = _DOSSIER_RE.fullmatch(value or "")
    if match is None:
        raise names.invalid_name("Expected `dossiers/{dossier}`.", field)
    return match.group(1)


def rule_of(value: str) -> tuple[str, str]:
    """(`dossiers/{dossier}`, rule id) of an access rule's name."""
    match = _RULE_RE.fullmatch(value or "")
    if match is None:
        raise names.invalid_name("Expected `dossiers/{dossier}/accessRules/{rule}`.", "name")
    return match.group(1), match.group(2)


def rpps(value: str, field: str = "professional_rpps") -> str:
    """The platform's one RPPS rule (11 ASCII digits, INVALID_RPPS); consent does not check
    the Luhn digit: identity's directory does where numbers enter the platform."""
    return kit_rpps.validate(value, field)


async def dossier_named(cache: SnapshotCache, value: str, field: str) -> str:
    """`dossiers/{dossier}`, or the record of `patients/{ins}/dossier`. No such record is
    NOT_FOUND, as for a dossier id."""
    match = _PATIENT_DOSSIER_RE.fullmatch(value or "")
    if match is None:
        return dossier_of(value, field)
    record = await cache.record_by_ins(kit_ins.validate(match.group(1), field))
    if record is None:
        raise no_record()
    return record.dossier
