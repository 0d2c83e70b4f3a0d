"""Destination checks and masking."""

from __future__ import annotations

import pytest

from dmp.notify.v1 import notify_pb2
from services.notify import validation

GOOD_EMAILS = [
    "jean.dupont@exemple.fr",
    "j@e.fr",
    "marie-claire+dmp@mail.sante.gouv.fr",
    "o'brien@example.co.uk",
    "x_y@sub-domain.example.com",
    "a" * 64 + "@exemple.fr",
]
BAD_EMAILS = [
    "",
    "jean",
    "jean@",
    "@exemple.fr",
    "jean@exemple",
    "jean@@exemple.fr",
    "jean@exemple..fr",
    "jean..dupont@exemple.fr",
    ".jean@exemple.fr",
    "jean.@exemple.fr",
    "jean dupont@exemple.fr",
    "jean@exemple.fr\r\nBcc: a@b.fr",
    "jean@exemple.fr, autre@exemple.fr",
    "Jean <jean@exemple.fr>",
    '"jean"@exemple.fr',
    "jean@[127.0.0.1]",
    "jean@-exemple.fr",
    "jean@exemple-.fr",
    "jean@exemple.f",
    "jean@exemple.123",
    "jérôme@exemple.fr",
    "jean@exémple.fr",
    "a" * 65 + "@exemple.fr",
    "jean@" + "a" * 250 + ".fr",
]
GOOD_PHONES = ["+33612345678", "+12025550123", "+4915112345678", "+12345678", "+123456789012345"]
BAD_PHONES = [
    "",
    "0612345678",
    "33612345678",
    "+33 6 12 34 56 78",
    "+33-612345678",
    "+0612345678",
    "+1234567",
    "+1234567890123456",
    "+33612345678\n",
    "+３３612345678",
]


@pytest.mark.parametrize("address", GOOD_EMAILS)
def test_good_emails(address: str) -> None:
    assert validation.is_valid_email(address)
    assert validation.destination_matches(notify_pb2.CHANNEL_EMAIL, address)
    assert not validation.destination_matches(notify_pb2.CHANNEL_SMS, address)


@pytest.mark.parametrize("address", BAD_EMAILS)
def test_bad_emails(address: str) -> None:
    assert not validation.is_valid_email(address)


@pytest.mark.parametrize("number", GOOD_PHONES)
def test_good_phones(number: str) -> None:
    assert validation.is_valid_phone(number)
    assert validation.destination_matches(notify_pb2.CHANNEL_SMS, number)
    assert not validation.destination_matches(notify_pb2.CHANNEL_EMAIL, number)


@pytest.mark.parametrize("number", BAD_PHONES)
def test_bad_phones(number: str) -> None:
    assert not validation.is_valid_phone(number)


def test_unspecified_channel_matches_nothing() -> None:
    assert not validation.destination_matches(notify_pb2.CHANNEL_UNSPECIFIED, "jean@exemple.fr")
    assert not validation.destination_matches(notify_pb2.CHANNEL_UNSPECIFIED, "+33612345678")


@pytest.mark.parametrize(
    ("code", "ok"),
    [("000000", True), ("123456", True), ("12345", False), ("1234567", False), ("12 456", False)],
)
def test_codes(code: str, ok: bool) -> None:
    assert validation.is_valid_code(code) is ok


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jean.dupont@exemple.fr", "j***@e***.fr"),
        ("j@e.fr", "j***@e***.fr"),
        ("marie@mail.sante.gouv.fr", "m***@m***.fr"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert validation.mask_email(address) == masked
    assert validation.mask(notify_pb2.CHANNEL_EMAIL, address) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+33612345678", "+33******78"),
        ("+12025550123", "+12******23"),
        ("+12345678", "+12******78"),
    ],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert validation.mask_phone(number) == masked
    assert validation.mask(notify_pb2.CHANNEL_SMS, number) == masked


def test_masks_hide_most_of_the_destination() -> None:
    assert "dupont" not in validation.mask_email("jean.dupont@exemple.fr")
    assert "exemple" not in validation.mask_email("jean.dupont@exemple.fr")
    assert "123456" not in validation.mask_phone("+33612345678")
