"""kit.filtering: the AIP-160 subset every list method shares, strict on everything else."""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
import pytest

from dmp.consent.v1 import consent_pb2 as C
from kit.errors import ServiceError
from kit.filtering import EQUALITY, MEMBERSHIP, ORDERING, Condition, Field, one_of, parse

FIELDS = {
    "code": Field("string"),
    "kind": Field("enum", EQUALITY, C.AccessRuleKind.DESCRIPTOR),
    "flags": Field("enum", MEMBERSHIP, C.AccessRuleKind.DESCRIPTOR),
    "time": Field("timestamp", ORDERING),
    "day": Field("date", ORDERING | EQUALITY),
}


def test_empty_filter_has_no_condition() -> None:
    assert parse("", FIELDS) == []
    assert parse("   ", FIELDS) == []


def test_conjunction_of_typed_comparisons() -> None:
    got = parse(
        'code = "A b\\"c" AND kind = GRANT AND time >= "2024-05-01T10:00:00Z" AND day < 2024-06-01',
        FIELDS,
    )
    assert got == [
        Condition("code", "=", ('A b"c',)),
        Condition("kind", "=", (C.ACCESS_RULE_KIND_GRANT,)),
        Condition("time", ">=", (datetime(2024, 5, 1, 10, tzinfo=UTC),)),
        Condition("day", "<", (date(2024, 6, 1),)),
    ]


def test_or_binds_tighter_than_and_with_or_without_parentheses() -> None:
    plain = parse("kind = GRANT OR kind = ACCESS_RULE_KIND_BLOCK AND code = x", FIELDS)
    grouped = parse("(kind = GRANT OR kind = BLOCK) AND code = x", FIELDS)
    expected = [
        Condition("kind", "=", (C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_BLOCK)),
        Condition("code", "=", ("x",)),
    ]
    assert plain == grouped == expected
    assert one_of(plain, "kind") == (C.ACCESS_RULE_KIND_GRANT, C.ACCESS_RULE_KIND_BLOCK)
    assert one_of(plain, "flags") == ()
    assert parse("flags:GRANT", FIELDS) == [Condition("flags", ":", (C.ACCESS_RULE_KIND_GRANT,))]


@pytest.mark.parametrize(
    "text",
    [
        "nope = 1",  # unknown field
        "code > x",  # operator the field does not take
        "kind = UNSPECIFIED",  # the zero value is never a filter value
        "kind = WHATEVER",
        'time >= "2024-05-01T10:00:00"',  # no time zone
        'time >= "2024-05-01"',  # a date is not a time
        "day = 2024-13-01",
        "code = x code = y",  # AND missing
        "code = x and code = y",  # lowercase keyword
        "NOT code = x",
        "code = x OR kind = GRANT",  # OR across fields
        "time > x OR time > y",  # OR of ordering comparisons
        "(code = x",
        "code =",
        'code = "unterminated',
        "code = x AND",
        "code = x AND code = y",  # one field twice: refused by one_of below
        "code ~ x",
        "x" * 1100,
        " AND ".join(["code = a"] * 40),
    ],
)
def test_everything_else_is_invalid_filter(text: str) -> None:
    with pytest.raises(ServiceError) as caught:
        one_of(parse(text, FIELDS), "code")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_FILTER"
    assert caught.value.field_violations.keys() == {"filter"}
