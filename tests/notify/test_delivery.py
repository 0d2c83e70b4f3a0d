"""Retry policy: what is retried, how long we wait, when we give up."""

from __future__ import annotations

import socket
import time

import aiosmtplib
import pytest

from services.notify.delivery import RetryPolicy, describe, is_transient, send_with_retries

POLICY = RetryPolicy(attempts=4, backoff_base_s=0.5, backoff_max_s=3.0)


class Flaky:
    """Raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        socket.gaierror(),
        TimeoutError(),
        aiosmtplib.SMTPConnectError("refused"),
        aiosmtplib.SMTPConnectTimeoutError("slow"),
        aiosmtplib.SMTPReadTimeoutError("slow"),
        aiosmtplib.SMTPServerDisconnected("bye"),
        aiosmtplib.SMTPConnectResponseError(554, "no service"),
        aiosmtplib.SMTPResponseException(421, "busy"),
        aiosmtplib.SMTPDataError(451, "local error"),
        aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "grey", "a")]),
    ],
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPDataError(554, "rejected"),
        aiosmtplib.SMTPSenderRefused(553, "not allowed", "from@x.fr"),
        aiosmtplib.SMTPAuthenticationError(535, "bad credentials"),
        aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "unknown", "a")]),
        aiosmtplib.SMTPNotSupported("no STARTTLS"),
        ValueError("bug"),
    ],
)
def test_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_error_description_never_holds_the_message() -> None:
    exc = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "jean@exemple.fr unknown", "jean@exemple.fr")]
    )
    assert describe(exc) == "SMTPRecipientsRefused:550"
    assert describe(ConnectionRefusedError("127.0.0.1:25")) == "ConnectionRefusedError"


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for _ in range(200):
        assert 0.25 <= POLICY.delay(1) <= 0.5
        assert 0.5 <= POLICY.delay(2) <= 1.0
        assert 1.0 <= POLICY.delay(3) <= 2.0
        assert 1.5 <= POLICY.delay(4) <= 3.0
        assert 1.5 <= POLICY.delay(10) <= 3.0
    assert len({POLICY.delay(3) for _ in range(20)}) > 1


async def test_transient_errors_are_retried_until_success() -> None:
    send = Flaky(ConnectionRefusedError(), aiosmtplib.SMTPResponseException(451, "later"))
    sleeps = Sleeps()
    failures: list[tuple[int, str]] = []

    async def on_failure(attempt: int, error: str) -> None:
        failures.append((attempt, error))

    outcome = await send_with_retries(send, POLICY, on_failure=on_failure, sleep=sleeps)
    assert outcome.sent
    assert outcome.attempts == 3
    assert send.calls == 3
    assert len(sleeps.delays) == 2
    assert failures == [(1, "ConnectionRefusedError"), (2, "SMTPResponseException:451")]


async def test_permanent_error_fails_fast() -> None:
    send = Flaky(aiosmtplib.SMTPDataError(554, "no"))
    sleeps = Sleeps()
    outcome = await send_with_retries(send, POLICY, sleep=sleeps)
    assert not outcome.sent
    assert outcome.attempts == 1
    assert outcome.error == "SMTPDataError:554"
    assert sleeps.delays == []


async def test_gives_up_after_the_last_attempt() -> None:
    send = Flaky(*(ConnectionRefusedError() for _ in range(10)))
    sleeps = Sleeps()
    outcome = await send_with_retries(send, POLICY, sleep=sleeps)
    assert not outcome.sent
    assert outcome.attempts == 4
    assert send.calls == 4
    assert len(sleeps.delays) == 3


async def test_no_retry_past_the_callers_deadline() -> None:
    send = Flaky(*(ConnectionRefusedError() for _ in range(10)))
    sleeps = Sleeps()
    outcome = await send_with_retries(send, POLICY, deadline=time.monotonic() + 0.1, sleep=sleeps)
    assert not outcome.sent
    assert outcome.attempts == 1
    assert sleeps.delays == []
