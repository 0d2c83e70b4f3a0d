"""kit.pagination: one signed token format, one set of reasons, page sizes as the protos say."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import grpc
import pytest
from pydantic import SecretStr

from dmp.history.v1 import history_pb2
from kit import pagination
from kit.errors import ServiceError
from kit.settings import ServiceSettings

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def _settings(current: str, **keys: str) -> ServiceSettings:
    secrets = {key_id: SecretStr(value) for key_id, value in keys.items()}
    return ServiceSettings(principal_key_id=current, principal_keys=secrets)


def _tokens(service: str = "records") -> pagination.PageTokens:
    return pagination.PageTokens.for_service(_settings("a", a=KEY_A), service)


def _refused(exc: pytest.ExceptionInfo[ServiceError], reason: str = "INVALID_PAGE_TOKEN") -> bool:
    return exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and exc.value.reason == reason


def test_round_trip_and_first_page() -> None:
    tokens = _tokens()
    fp = pagination.fingerprint("dossiers/1", ["a", "b"])
    token = tokens.issue({"t": "2025-01-01T00:00:00", "i": 42}, fp)
    position = tokens.read(token, fp)
    assert position is not None
    assert position.integer("i") == 42
    assert position.text("t") == "2025-01-01T00:00:00"
    assert tokens.read("", fp) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t + "x",
        lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:],
        lambda t: "garbage",
        lambda t: t.replace(".", ""),
        lambda t: "é" + t,
        lambda t: t + "=" * pagination.MAX_TOKEN_LENGTH,
        lambda t: (
            base64.urlsafe_b64encode(
                base64.urlsafe_b64decode(t.partition(".")[0]).replace(b'"i": 4', b'"i": 1')
            ).decode()
            + "."
            + t.partition(".")[2]
        ),
    ],
)
def test_an_edited_token_is_refused(edit: object) -> None:
    tokens = _tokens()
    fp = pagination.fingerprint("dossiers/1")
    token = tokens.issue({"i": 42}, fp)
    with pytest.raises(ServiceError) as exc:
        tokens.read(edit(token), fp)  # type: ignore[operator]
    assert _refused(exc)


def test_a_token_is_bound_to_its_request_and_service() -> None:
    tokens = _tokens()
    token = tokens.issue({"o": 10}, pagination.fingerprint("dossiers/1", "drug"))
    with pytest.raises(ServiceError) as exc:
        tokens.read(token, pagination.fingerprint("dossiers/1", "act"))
    assert _refused(exc)
    with pytest.raises(ServiceError) as exc:
        _tokens("consent").read(token, pagination.fingerprint("dossiers/1", "drug"))
    assert _refused(exc)


def test_rotation_reads_tokens_of_a_listed_previous_key() -> None:
    fp = pagination.fingerprint("x")
    old = pagination.PageTokens.for_service(_settings("a", a=KEY_A), "notify").issue({"i": 1}, fp)
    rotated = pagination.PageTokens.for_service(_settings("b", a=KEY_A, b=KEY_B), "notify")
    position = rotated.read(old, fp)
    assert position is not None
    assert position.integer("i") == 1
    dropped = pagination.PageTokens.for_service(_settings("b", b=KEY_B), "notify")
    with pytest.raises(ServiceError) as exc:
        dropped.read(old, fp)
    assert _refused(exc)


def test_request_fingerprint_ignores_only_paging_fields() -> None:
    base = history_pb2.GetCareHistoryRequest(name="dossiers/1/careHistory", filter="kind = DRUG")
    paged = history_pb2.GetCareHistoryRequest()
    paged.CopyFrom(base)
    paged.page_size = 7
    paged.page_token = "abc"
    assert pagination.request_fingerprint(base) == pagination.request_fingerprint(paged)
    other = history_pb2.GetCareHistoryRequest(
        name="dossiers/1/careHistory", filter="kind = BIOLOGY"
    )
    assert pagination.request_fingerprint(base) != pagination.request_fingerprint(other)
    assert pagination.request_fingerprint(base, "caller-1") != pagination.request_fingerprint(
        base, "caller-2"
    )


def test_fingerprint_parts_are_typed_and_delimited() -> None:
    fp = pagination.fingerprint
    assert fp("a", "bc") != fp("ab", "c")
    assert fp(1) != fp("1") != fp(True)
    assert fp(None) != fp("")
    assert fp([1, 2]) != fp([2, 1])
    assert fp(date(2025, 1, 2)) == fp(date(2025, 1, 2))
    assert fp(datetime(2025, 1, 2, tzinfo=UTC)) != fp(date(2025, 1, 2))


@pytest.mark.parametrize(
    ("values", "read"),
    [
        ({"i": "1"}, lambda p: p.integer("i")),
        ({"i": True}, lambda p: p.integer("i")),
        ({"i": -1}, lambda p: p.integer("i")),
        ({}, lambda p: p.integer("i")),
        ({"t": 1}, lambda p: p.text("t")),
    ],
)
def test_a_position_of_the_wrong_shape_is_refused(values: dict[str, object], read: object) -> None:
    with pytest.raises(ServiceError) as exc:
        read(pagination.Position(values))  # type: ignore[operator]
    assert _refused(exc)


def test_page_size_default_maximum_and_negative() -> None:
    assert pagination.page_size(0) == 50
    assert pagination.page_size(500) == 200
    assert pagination.page_size(7) == 7
    assert pagination.page_size(0, default=20, maximum=100) == 20
    assert pagination.page_size(101, default=20, maximum=100) == 100
    with pytest.raises(ServiceError) as exc:
        pagination.page_size(-1)
    assert _refused(exc, "INVALID_PAGE_SIZE")
