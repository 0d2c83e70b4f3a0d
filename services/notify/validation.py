"""Shape checks of destinations and masking for display.

E-mail addresses are restricted to plain ASCII addr-specs (no quoted local
parts, no IP literals, no internationalized names): what a patient portal
really collects, and nothing that could smuggle a header or a second
recipient into the SMTP conversation.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address

from dmp.notify.v1 import notify_pb2

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}")
_PHONE = re.compile(r"\+[1-9][0-9]{7,14}")
_CODE = re.compile(r"[0-9]{6}")
# identity's activation codes: 12 Crockford base32 characters in groups of 4.
_ACTIVATION_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64


def is_valid_email(value: str) -> bool:
    """A strict `local@domain.tld` check, confirmed by the stdlib address parser."""
    if not value or len(value) > MAX_EMAIL_LENGTH or not value.isascii():
        return False
    local, sep, domain = value.rpartition("@")
    if not sep or len(local) > MAX_LOCAL_LENGTH or not _LOCAL.fullmatch(local):
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not _TLD.fullmatch(labels[-1]):
        return False
    if not all(_LABEL.fullmatch(label) for label in labels):
        return False
    try:
        parsed = Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        return False
    return parsed.addr_spec == value


def is_valid_phone(value: str) -> bool:
    """E.164: `+`, then 8 to 15 digits, the first not zero."""
    return bool(_PHONE.fullmatch(value))


def is_valid_code(value: str, purpose: int = notify_pb2.CODE_PURPOSE_LOGIN) -> bool:
    if purpose == notify_pb2.CODE_PURPOSE_ACTIVATION:
        return bool(_ACTIVATION_CODE.fullmatch(value))
    return bool(_CODE.fullmatch(value))


def destination_matches(channel: int, destination: str) -> bool:
    if channel == notify_pb2.CHANNEL_EMAIL:
        return is_valid_email(destination)
    if channel == notify_pb2.CHANNEL_SMS:
        return is_valid_phone(destination)
    return False


def mask_email(address: str) -> str:
    """`jean.dupont@exemple.fr` → `j***@e***.fr`: enough to recognise, not to contact."""
    local, _, domain = address.rpartition("@")
    labels = domain.split(".")
    return f"{local[:1]}***@{labels[0][:1]}***.{labels[-1]}"


def mask_phone(number: str) -> str:
    """`+33612345678` → `+33******78` (fixed width: the length is not revealed)."""
    digits = number[1:]
    return f"+{digits[:2]}******{digits[-2:]}"


def mask(channel: int, destination: str) -> str:
    if channel == notify_pb2.CHANNEL_EMAIL:
        return mask_email(destination)
    return mask_phone(destination)
