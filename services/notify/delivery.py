"""Attempts with exponential backoff: retry what may pass later, stop at once on refusals.

Transient: the relay or provider cannot be reached, times out, drops the
connection, or answers 4xx (greylisting, mailbox busy). Permanent: any 5xx
(unknown recipient, policy refusal, bad credentials) and everything we do not
recognise — retrying an unknown failure only repeats it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_base_s: float
    backoff_max_s: float

    def delay(self, retry: int) -> float:
        """Delay before retry number `retry` (1-based): half fixed, half random ("equal jitter")."""
        ceiling: float = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)  # noqa: S311 - not cryptographic


@dataclass(frozen=True)
class Outcome:
    sent: bool
    attempts: int
    #: Type (and SMTP code) of the last failure: never its message, which may echo the address.
    error: str | None = None


def smtp_code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        # Retry only if every refusal is temporary.
        return max(codes) if codes else None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return int(exc.code)
    return None


def is_transient(exc: BaseException) -> bool:
    code = smtp_code(exc)
    if code is not None and not isinstance(exc, aiosmtplib.SMTPConnectError):
        return 400 <= code < 500
    # Connection refused/reset, DNS failure, timeouts, disconnections.
    return isinstance(exc, (OSError, TimeoutError, aiosmtplib.SMTPServerDisconnected))


def describe(exc: BaseException) -> str:
    code = smtp_code(exc)
    name = type(exc).__name__
    return f"{name}:{code}" if code is not None else name


async def send_with_retries(
    send: Callable[[], Awaitable[None]],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    on_failure: Callable[[int, str], Awaitable[None]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Outcome:
    """Call `send` until it succeeds, fails permanently, runs out of attempts or of time.

    `deadline` is a `time.monotonic()` instant (the caller's gRPC deadline): no
    retry is started that could not finish before it.
    """
    error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = describe(exc)
            if on_failure is not None:
                await on_failure(attempt, error)
            if not is_transient(exc) or attempt == policy.attempts:
                return Outcome(sent=False, attempts=attempt, error=error)
            pause = policy.delay(attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                return Outcome(sent=False, attempts=attempt, error=error)
            await sleep(pause)
        else:
            return Outcome(sent=True, attempts=attempt)
    return Outcome(sent=False, attempts=policy.attempts, error=error or None)
