"""Field checks run before anything is written: required, length, format, enums."""

from __future__ import annotations

import re

from google.protobuf.descriptor import EnumDescriptor

from kit import names
from kit.errors import invalid_argument

_HEX_ID = re.compile(r"[0-9a-f]{32}")
# Pragmatic address shape (RFC 5321 lengths); delivery proves the rest.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_E164 = re.compile(r"\+[1-9]\d{7,14}")


def required(value: str, field: str, max_len: int) -> str:
    if not value:
        raise invalid_argument("FIELD_REQUIRED", f"{field} is required.", field)
    return bounded(value, field, max_len)


def bounded(value: str, field: str, max_len: int) -> str:
    if len(value) > max_len:
        raise invalid_argument(
            "FIELD_TOO_LONG", f"{field} is longer than {max_len} characters.", field
        )
    return value


def resource_id(name: str, collection: str, field: str) -> str:
    """The id in `<collection>/<32 hex>`, else INVALID_NAME."""
    required(name, field, len(collection) + 33)
    prefix, _, ident = name.partition("/")
    if prefix != collection or not _HEX_ID.fullmatch(ident):
        raise names.invalid_name(f"{field} must look like {collection}/{{id}}.", field)
    return ident


def email(value: str, field: str = "email") -> str:
    bounded(value, field, 254)
    if value and not _EMAIL.fullmatch(value):
        raise invalid_argument("EMAIL_INVALID", "The e-mail address is malformed.", field)
    return value


def mobile_phone(value: str, field: str = "mobile_phone") -> str:
    bounded(value, field, 16)
    if value and not _E164.fullmatch(value):
        raise invalid_argument(
            "PHONE_INVALID", "The mobile phone must be in E.164 form (+33…).", field
        )
    return value


def enum_value(value: int, enum: EnumDescriptor, field: str) -> int:
    """A set, known value of a proto3 (open) enum."""
    if value == 0:
        raise invalid_argument("ENUM_UNSPECIFIED", f"{field} must be set.", field)
    if value not in enum.values_by_number:
        raise invalid_argument("ENUM_UNKNOWN", f"{field} has an unknown value.", field)
    return value


def mask_email(value: str) -> str:
    if not value:
        return ""
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    if not value:
        return ""
    return value[:3] + "*" * max(len(value) - 5, 0) + value[-2:]
