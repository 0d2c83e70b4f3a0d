"""Resource names of the records API (AIP-122) and opaque ids."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from kit import ins as kit_ins
from kit import names as kit_names

_ID = r"[0-9a-f]{32}"
_DOSSIER = re.compile(rf"dossiers/({_ID})")
_DOSSIER_ALIAS = re.compile(r"patients/([0-9A-Za-z ]{15,20})/dossier")
_DOCUMENT = re.compile(rf"dossiers/({_ID})/documents/({_ID})")
_PROFILE = re.compile(rf"dossiers/({_ID})/healthProfile")
_PROFILE_ALIAS = re.compile(r"patients/([0-9A-Za-z ]{15,20})/dossier/healthProfile")
_DIRECTIVES = re.compile(rf"dossiers/({_ID})/advanceDirectives")


@dataclass(frozen=True)
class RecordRef:
    """A record named by its id (`dossiers/{dossier}`) or by its patient's INS alias
    (`patients/{ins}/dossier`): exactly one of the two is set."""

    dossier_id: str | None = None
    patient_ins: str | None = None


def new_id() -> str:
    return uuid.uuid4().hex


def dossier_name(dossier_id: str) -> str:
    return f"dossiers/{dossier_id}"


def document_name(dossier_id: str, document_id: str) -> str:
    return f"dossiers/{dossier_id}/documents/{document_id}"


def profile_name(dossier_id: str) -> str:
    return f"dossiers/{dossier_id}/healthProfile"


def advance_directives_name(dossier_id: str) -> str:
    return f"dossiers/{dossier_id}/advanceDirectives"


def vaccination_name(dossier_id: str, vaccination_id: str) -> str:
    return f"dossiers/{dossier_id}/vaccinations/{vaccination_id}"


def _bad(field: str) -> Exception:
    return kit_names.invalid_name(f"`{field}` is not a valid resource name.", field)


def parse_dossier(name: str, field: str = "name") -> str:
    match = _DOSSIER.fullmatch(name)
    if match is None:
        raise _bad(field)
    return match.group(1)


def parse_dossier_or_alias(name: str, field: str = "name") -> tuple[str, str]:
    """("id", dossier_id) or ("ins", raw INS) for `patients/{ins}/dossier`."""
    match = _DOSSIER.fullmatch(name)
    if match is not None:
        return "id", match.group(1)
    alias = _DOSSIER_ALIAS.fullmatch(name)
    if alias is not None:
        return "ins", alias.group(1)
    raise _bad(field)


def parse_document(name: str, field: str = "name") -> tuple[str, str]:
    match = _DOCUMENT.fullmatch(name)
    if match is None:
        raise _bad(field)
    return match.group(1), match.group(2)


def parse_profile(name: str, field: str = "name") -> str:
    match = _PROFILE.fullmatch(name)
    if match is None:
        raise _bad(field)
    return match.group(1)


def parse_record(name: str, field: str = "parent") -> RecordRef:
    """`dossiers/{dossier}` or `patients/{ins}/dossier` (the INS checked: INS_MALFORMED,
    INS_KEY_MISMATCH), for a caller in front of the patient who knows only the INS."""
    kind, value = parse_dossier_or_alias(name, field)
    if kind == "id":
        return RecordRef(dossier_id=value)
    return RecordRef(patient_ins=kit_ins.validate(value, field))


def parse_profile_ref(name: str, field: str = "name") -> RecordRef:
    """`dossiers/{dossier}/healthProfile` or `patients/{ins}/dossier/healthProfile`."""
    alias = _PROFILE_ALIAS.fullmatch(name)
    if alias is not None:
        return RecordRef(patient_ins=kit_ins.validate(alias.group(1), field))
    return RecordRef(dossier_id=parse_profile(name, field))


def parse_advance_directives(name: str, field: str = "name") -> str:
    match = _DIRECTIVES.fullmatch(name)
    if match is None:
        raise _bad(field)
    return match.group(1)
