"""Resource names (AIP-122): one refusal, INVALID_ARGUMENT `INVALID_NAME`, for every service.

A name that does not parse (`name`, `parent`, a record named in a request body) is the same
mistake whichever service reads it, so it has one reason; before this module it had six
(INVALID_NAME, RESOURCE_NAME_INVALID, NAME_INVALID, PARENT_INVALID, INVALID_DOSSIER_NAME,
INVALID_RULE_NAME). Each service keeps the syntax of the ids it issues (records: 32 hex
digits, identity: professionals by RPPS); `DOSSIER` is the syntax of a record's name in the
services that only refer to records (consent, history_feed): AIP-122's unreserved
characters, at most 64 of them.
"""

from __future__ import annotations

import re

from kit.errors import ServiceError, invalid_argument

DOSSIER_ID = r"[A-Za-z0-9._~-]{1,64}"
#: `dossiers/{dossier}`; group 1 is the id.
DOSSIER = re.compile(rf"dossiers/({DOSSIER_ID})")


def invalid_name(message: str, field: str = "name") -> ServiceError:
    """INVALID_ARGUMENT INVALID_NAME about `field` (`message` says the expected shape)."""
    return invalid_argument("INVALID_NAME", message, field)


def parse(pattern: re.Pattern[str], value: str, message: str, field: str = "name") -> re.Match[str]:
    """`pattern.fullmatch(value)`, else INVALID_NAME."""
    match = pattern.fullmatch(value)
    if match is None:
        raise invalid_name(message, field)
    return match
