"""kit.principal: a signed principal is accepted only untouched, with a known key,
for the method it was issued for, before it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from dmp.authz.v1 import principal_pb2
from dmp_dev.testing.principals import patient
from kit import principal as principals
from kit.errors import ServiceError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
METHOD = "/dmp.notify.v1.NotifyService/GetContactPreferences"


def _signed(principal: principal_pb2.Principal | None = None, **stamp_kw: object) -> bytes:
    stamped = principals.stamp(principal or patient("1234567890123"), METHOD, **stamp_kw)  # type: ignore[arg-type]
    return principals.sign(stamped, "k1", KEY)


def _refused(data: bytes, keys: dict[str, bytes], method: str = METHOD, **kw: object) -> str:
    with pytest.raises(ServiceError) as caught:
        principals.verify(data, keys, method, **kw)  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    return caught.value.reason


def test_valid_principal_round_trips() -> None:
    verified = principals.verify(_signed(), {"k1": KEY}, METHOD)
    assert verified.kind == principal_pb2.PRINCIPAL_KIND_PATIENT
    assert verified.patient_ins == "1234567890123"
    assert verified.method == METHOD


def test_every_listed_key_verifies_so_keys_can_rotate() -> None:
    assert principals.verify(_signed(), {"k0": OTHER_KEY, "k1": KEY}, METHOD).subject


def test_tampered_payload_is_refused() -> None:
    signed = principal_pb2.SignedPrincipal.FromString(_signed())
    forged = principal_pb2.Principal.FromString(signed.payload)
    forged.kind = principal_pb2.PRINCIPAL_KIND_INTERNAL
    signed.payload = forged.SerializeToString()
    assert _refused(signed.SerializeToString(), {"k1": KEY}) == "PRINCIPAL_BAD_SIGNATURE"


def test_tampered_mac_is_refused() -> None:
    signed = principal_pb2.SignedPrincipal.FromString(_signed())
    signed.mac = bytes(b ^ 1 for b in signed.mac)
    assert _refused(signed.SerializeToString(), {"k1": KEY}) == "PRINCIPAL_BAD_SIGNATURE"


def test_wrong_key_under_the_right_id_is_refused() -> None:
    assert _refused(_signed(), {"k1": OTHER_KEY}) == "PRINCIPAL_BAD_SIGNATURE"


def test_unknown_key_id_is_refused() -> None:
    assert _refused(_signed(), {"k2": KEY}) == "PRINCIPAL_KEY_UNKNOWN"


def test_principal_for_another_method_is_refused() -> None:
    other = "/dmp.notify.v1.NotifyService/ListNotifications"
    assert _refused(_signed(), {"k1": KEY}, other) == "PRINCIPAL_WRONG_METHOD"


def test_expired_principal_is_refused() -> None:
    issued = datetime.now(UTC) - timedelta(minutes=5)
    data = _signed(now=issued, ttl=timedelta(seconds=60))
    assert _refused(data, {"k1": KEY}) == "PRINCIPAL_EXPIRED"


def test_principal_expires_exactly_at_its_expiry_time() -> None:
    issued = datetime(2030, 1, 1, tzinfo=UTC)
    data = _signed(now=issued, ttl=timedelta(seconds=60))
    assert principals.verify(data, {"k1": KEY}, METHOD, now=issued + timedelta(seconds=59))
    reason = _refused(data, {"k1": KEY}, now=issued + timedelta(seconds=60))
    assert reason == "PRINCIPAL_EXPIRED"


def test_principal_without_expiry_is_refused() -> None:
    unstamped = patient("1234567890123")
    unstamped.method = METHOD
    data = principals.sign(unstamped, "k1", KEY)
    assert _refused(data, {"k1": KEY}) == "PRINCIPAL_EXPIRED"


def test_principal_without_kind_is_refused() -> None:
    data = _signed(principal_pb2.Principal(subject="nobody"))
    assert _refused(data, {"k1": KEY}) == "PRINCIPAL_MALFORMED"


def test_garbage_metadata_is_refused() -> None:
    assert _refused(b"\xff\xff\xff", {"k1": KEY}) == "PRINCIPAL_MALFORMED"


def test_require_kind() -> None:
    p = patient("1234567890123")
    assert principals.require_kind(p, principal_pb2.PRINCIPAL_KIND_PATIENT) is p
    with pytest.raises(ServiceError) as caught:
        principals.require_kind(p, principal_pb2.PRINCIPAL_KIND_PROFESSIONAL)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ServiceError) as caught:
        principals.require_kind(None, principal_pb2.PRINCIPAL_KIND_PATIENT)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
