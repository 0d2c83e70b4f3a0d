"""Request fields consent reads: resource names, RPPS numbers, page sizes.

Malformed values are INVALID_ARGUMENT with the field, before anything is read
or written. `patients/{ins}/dossier` is the one name resolved through the
record projection: a professional in front of the patient knows the INS.
"""

from __future__ import annotations

import re

from kit import ins as kit_ins
from kit.errors import invalid_argument
from services.consent.cache import SnapshotCache
from services.consent.guard import no_record

_PATIENT_DOSSIER_RE = re.compile(r"patients/([0-9A-Za-z]{15})/dossier")
_DOSSIER_RE = re.compile(r"^(dossiers/[A-Za-z0-9._~-]{1,64})(?:/.*)?$")
_RULE_RE = re.compile(r"^(dossiers/[A-Za-z0-9._~-]{1,64})/accessRules/([A-Za-z0-9-]{1,64})$")
_RPPS_RE = re.compile(r"^\d{11}$")


def dossier_of(value: str, field: str) -> str:
    """`dossiers/{dossier}` of a name that starts with it."""
    match = _DOSSIER_RE.match(value or "")
    if match is None:
        raise invalid_argument("INVALID_DOSSIER_NAME", "Expected `dossiers/{dossier}`.", field)
    return match.group(1)


def rule_of(value: str) -> tuple[str, str]:
    """(`dossiers/{dossier}`, rule id) of an access rule's name."""
    match = _RULE_RE.match(value or "")
    if match is None:
        raise invalid_argument(
            "INVALID_RULE_NAME", "Expected `dossiers/{dossier}/accessRules/{rule}`.", "name"
        )
    return match.group(1), match.group(2)


def rpps(value: str, field: str = "professional_rpps") -> str:
    if not _RPPS_RE.match(value or ""):
        raise invalid_argument("INVALID_RPPS", "An RPPS number has 11 digits.", field)
    return value


def page_size(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise invalid_argument("INVALID_PAGE_SIZE", "page_size must be positive.", "page_size")
    return min(value or default, maximum)


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
