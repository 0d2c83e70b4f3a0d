"""Wrong passwords throttle a login identifier (LOGIN_THROTTLED), on identity's fake clock.

The session's identity runs with the defaults: 10 wrong passwords within 900 s, then
900 s of LOGIN_THROTTLED. The same tests through the launcher-started gateway, with
other settings, are in tests/gateway/test_anonymous_limits.py.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import func, select

from dmp.identity.v1 import identity_pb2
from kit.clock import ManualClock
from kit.errors import error_info
from services.identity import login_throttle, models
from services.identity.settings import DEV_OTP_PEPPER
from tests.fixtures.notify import NotifySinks
from tests.identity.helpers import Rows, login, random_ins, register_patient, rid

MAX_FAILURES = 10
WINDOW_S = 900
THROTTLE_S = 900
PEPPER = base64.b64decode(DEV_OTP_PEPPER)  # the tests' identity runs on the dev pepper


async def attempt(stub, identifier: str, password: str) -> grpc.aio.AioRpcError:
    """A StartLogin that must fail; its error."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.StartLogin(
            identity_pb2.StartLoginRequest(
                request_id=rid(), identifier=identifier, password=password
            )
        )
    return exc.value


def reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    info = error_info(error)
    assert info is not None
    return error.code(), info.reason


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo")


WRONG = (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
THROTTLED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")


async def fail_times(stub, identifier: str, password: str, times: int) -> None:
    for n in range(1, times + 1):
        assert reason(await attempt(stub, identifier, password)) == WRONG, n


async def test_wrong_passwords_throttle_the_identifier_until_the_period_ends(
    stub, notify_sinks: NotifySinks, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    await fail_times(stub, patient.ins, "wrong-" + patient.password, MAX_FAILURES)
    # The right password is refused too: the throttle tells nothing about it.
    refused = await attempt(stub, patient.ins, patient.password)
    assert reason(refused) == THROTTLED
    assert retry_delay_s(refused) == pytest.approx(THROTTLE_S, abs=1)
    assert reason(await attempt(stub, patient.ins, "wrong-" + patient.password)) == THROTTLED
    clock.advance(timedelta(seconds=THROTTLE_S - 60))
    later = await attempt(stub, patient.ins, patient.password)
    assert reason(later) == THROTTLED
    assert retry_delay_s(later) == pytest.approx(60, abs=1)
    clock.advance(timedelta(seconds=61))
    await login(stub, notify_sinks, patient)


async def test_an_unknown_identifier_gets_the_same_answers(stub) -> None:
    patient = await register_patient(stub)
    unknown = random_ins()
    answers = {}
    for label, identifier in (("account", patient.ins), ("unknown", unknown)):
        await fail_times(stub, identifier, "wrong-" + patient.password, MAX_FAILURES)
        error = await attempt(stub, identifier, patient.password)
        answers[label] = (*reason(error), error.details(), round(retry_delay_s(error)))
    assert answers["account"] == answers["unknown"]
    assert answers["account"][:2] == THROTTLED


async def test_a_right_password_starts_the_count_again(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    await fail_times(stub, patient.ins, "wrong-" + patient.password, MAX_FAILURES - 1)
    await login(stub, notify_sinks, patient)
    await fail_times(stub, patient.ins, "wrong-" + patient.password, MAX_FAILURES)
    assert reason(await attempt(stub, patient.ins, patient.password)) == THROTTLED


async def test_failures_older_than_the_window_are_forgotten(stub, clock: ManualClock) -> None:
    patient = await register_patient(stub)
    await fail_times(stub, patient.ins, "wrong-" + patient.password, MAX_FAILURES)
    clock.advance(timedelta(seconds=WINDOW_S + 1))
    await fail_times(stub, patient.ins, "wrong-" + patient.password, MAX_FAILURES)
    assert reason(await attempt(stub, patient.ins, patient.password)) == THROTTLED


async def test_other_identifiers_are_not_affected(stub, notify_sinks: NotifySinks) -> None:
    throttled, other = await register_patient(stub), await register_patient(stub)
    await fail_times(stub, throttled.ins, "wrong-" + throttled.password, MAX_FAILURES)
    assert reason(await attempt(stub, throttled.ins, throttled.password)) == THROTTLED
    await login(stub, notify_sinks, other)


async def test_concurrent_wrong_passwords_never_exceed_the_limit(stub) -> None:
    patient = await register_patient(stub)
    errors = await asyncio.gather(
        *(attempt(stub, patient.ins, f"wrong-{n}-{patient.password}") for n in range(25))
    )
    answers = [reason(e) for e in errors]
    assert answers.count(WRONG) == MAX_FAILURES
    assert answers.count(THROTTLED) == 25 - MAX_FAILURES


async def test_identifiers_are_stored_keyed_never_in_clear(stub, rows: Rows) -> None:
    identifier = random_ins()
    await attempt(stub, identifier, "some-password-1")
    mac = login_throttle.identifier_mac(PEPPER, identifier)
    table = models.login_failures
    async with rows.sessions() as session:
        stored = (await session.execute(select(table))).all()
    assert any(row.identifier_mac == mac and row.attempts == 1 for row in stored)
    assert not any(identifier.encode() in row.identifier_mac for row in stored)
    assert all(len(row.identifier_mac) == 32 for row in stored)


async def test_counters_past_their_window_are_pruned(stub, rows: Rows, clock: ManualClock) -> None:
    sprayed = [random_ins() for _ in range(5)]
    for identifier in sprayed:
        await attempt(stub, identifier, "some-password-1")
    macs = [login_throttle.identifier_mac(PEPPER, i) for i in sprayed]
    table = models.login_failures
    count = select(func.count()).select_from(table).where(table.c.identifier_mac.in_(macs))
    assert await rows.scalar(count) == len(sprayed)
    clock.advance(timedelta(seconds=WINDOW_S + 1))
    await attempt(stub, random_ins(), "some-password-1")  # a new row prunes old ones
    assert await rows.scalar(count) == 0
