"""Login with password + one-time code against the real NotifyApp."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from dmp.identity.v1 import identity_pb2
from kit.clock import ManualClock
from kit.errors import error_info
from kit.server import RunningServer
from kit.tokens import AccessTokenVerifier, load_public_key, public_key_path
from services.identity import models
from tests.fixtures.notify import NotifySinks
from tests.identity.helpers import (
    Rows,
    login,
    random_ins,
    register_patient,
    rid,
    start_login,
)


def failure(exc: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    info = error_info(exc.value)
    assert info is not None
    assert info.domain == "identity.dmp"
    return exc.value.code(), info.reason


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo")


async def verify(stub, challenge: str, code: str) -> identity_pb2.VerifyOneTimeCodeResponse:
    return await stub.VerifyOneTimeCode(
        identity_pb2.VerifyOneTimeCodeRequest(request_id=rid(), challenge=challenge, code=code)
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_full_login_by_sms(
    stub, notify_sinks: NotifySinks, identity_server: RunningServer, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    assert started.channel == identity_pb2.DELIVERY_CHANNEL_SMS
    assert started.challenge.startswith("challenges/")
    assert patient.phone not in started.masked_destination
    tokens = (await verify(stub, started.challenge, code)).tokens
    assert tokens.account == patient.account
    assert tokens.refresh_token.startswith("dmprt_")
    # The gateway verifies the access token with the public key alone.
    settings = identity_server.app.settings
    public = load_public_key(public_key_path(settings.token_signing_key_file))  # type: ignore[attr-defined]
    claims = AccessTokenVerifier([public]).verify(tokens.access_token, now=clock.now())
    assert claims.ins == patient.ins
    assert claims.account == patient.account.removeprefix("accounts/")
    assert tokens.session.endswith("/sessions/" + claims.session_id)
    assert (claims.expires_at - claims.issued_at).total_seconds() == 600


async def test_login_by_email_when_no_mobile(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub, email_only=True)
    started, _ = await start_login(stub, notify_sinks, patient)
    assert started.channel == identity_pb2.DELIVERY_CHANNEL_EMAIL
    assert started.masked_destination
    assert patient.email not in started.masked_destination


async def test_unknown_identifier_and_wrong_password_look_the_same(stub) -> None:
    patient = await register_patient(stub)
    timings = {}
    for label, identifier, password in [
        ("unknown", random_ins(), patient.password),
        ("wrong", patient.ins, patient.password + "x"),
    ]:
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.StartLogin(
                identity_pb2.StartLoginRequest(
                    request_id=rid(), identifier=identifier, password=password
                )
            )
        timings[label] = time.perf_counter() - started
        assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
        assert exc.value.details() == "Wrong identifier or password."
    # Informational only (no timed assertion): both paths run one argon2 verification.
    print(
        f"unknown identifier {timings['unknown'] * 1000:.1f} ms, "
        f"wrong password {timings['wrong'] * 1000:.1f} ms"
    )


async def test_code_is_single_use(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    await verify(stub, started.challenge, code)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, started.challenge, code)
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "OTP_ALREADY_USED")


async def test_code_expires_after_five_minutes(
    stub, notify_sinks: NotifySinks, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    assert (
        started.expire_time.ToDatetime(tzinfo=UTC).timestamp() - clock.now().timestamp()
    ) == pytest.approx(300, abs=1)
    clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, started.challenge, code)
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "OTP_EXPIRED")


async def test_code_just_before_expiry_works(
    stub, notify_sinks: NotifySinks, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    clock.advance(timedelta(minutes=4, seconds=59))
    await verify(stub, started.challenge, code)


async def test_unknown_challenge_is_invalid(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, "challenges/" + "0" * 32, "123456")
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")


async def test_five_wrong_codes_lock_and_throttle(
    stub, notify_sinks: NotifySinks, clock: ManualClock, rows: Rows
) -> None:
    patient = await register_patient(stub)
    other, _ = await start_login(stub, notify_sinks, patient)  # a second live challenge
    started, code = await start_login(stub, notify_sinks, patient)
    for attempt in range(1, 5):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await verify(stub, started.challenge, wrong(code))
        assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID"), attempt
    challenge_id = started.challenge.removeprefix("challenges/")
    attempts = await rows.scalar(
        select(models.challenges.c.attempts).where(models.challenges.c.id == challenge_id)
    )
    assert attempts == 4  # failed tries are committed even though the RPC fails
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, started.challenge, wrong(code))
    assert failure(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OTP_LOCKED")
    assert retry_delay_s(exc.value) == pytest.approx(900)
    # Dead: even the right code is refused now, and so is the other live challenge.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, started.challenge, code)
    assert failure(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OTP_LOCKED")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await verify(stub, other.challenge, "000000")
    assert failure(exc)[1] == "OTP_LOCKED"
    # Throttled: told only to whoever has the right password.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.StartLogin(
            identity_pb2.StartLoginRequest(
                request_id=rid(), identifier=patient.ins, password=patient.password + "x"
            )
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    clock.advance(timedelta(minutes=10))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.StartLogin(
            identity_pb2.StartLoginRequest(
                request_id=rid(), identifier=patient.ins, password=patient.password
            )
        )
    assert failure(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ACCOUNT_THROTTLED")
    assert retry_delay_s(exc.value) == pytest.approx(300, abs=1)
    clock.advance(timedelta(minutes=5, seconds=1))
    await login(stub, notify_sinks, patient)


async def test_concurrent_wrong_codes_never_exceed_the_limit(
    stub, notify_sinks: NotifySinks, rows: Rows
) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    results = await asyncio.gather(
        *(verify(stub, started.challenge, wrong(code)) for _ in range(12)), return_exceptions=True
    )
    reasons = sorted(error_info(r).reason for r in results)  # type: ignore[arg-type,union-attr]
    assert reasons.count("OTP_INVALID") == 4
    assert reasons.count("OTP_LOCKED") == 8
    attempts = await rows.scalar(
        select(models.challenges.c.attempts).where(
            models.challenges.c.id == started.challenge.removeprefix("challenges/")
        )
    )
    assert attempts == 5


async def test_codes_are_never_stored_in_clear(stub, notify_sinks: NotifySinks, rows: Rows) -> None:
    patient = await register_patient(stub)
    started, code = await start_login(stub, notify_sinks, patient)
    mac = await rows.scalar(
        select(models.challenges.c.code_mac).where(
            models.challenges.c.id == started.challenge.removeprefix("challenges/")
        )
    )
    assert isinstance(mac, bytes)
    assert len(mac) == 32
    assert code.encode() not in mac


async def test_retry_with_same_request_id_is_refused(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    request = identity_pb2.StartLoginRequest(
        request_id=rid(), identifier=patient.ins, password=patient.password
    )
    await stub.StartLogin(request)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.StartLogin(request)
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ALREADY_PROCESSED")
