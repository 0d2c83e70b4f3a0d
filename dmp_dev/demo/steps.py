"""Running one demo step: call, compare the outcome with the expected one, report it.

A step either expects success or one of a few refusal codes. Effects that
travel by event (consent's view of a new record, a cached decision dropped on
`consent.changed`, a notification) are awaited by repeating the step until
its expected outcome or `wait_s`, never by sleeping a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from dmp_dev.demo.connect import DemoError
from kit.errors import error_info

T = TypeVar("T")
OK = "OK"


@dataclass(frozen=True)
class StepResult:
    number: int
    actor: str
    call: str
    expected: str
    outcome: str
    ok: bool


@dataclass(frozen=True)
class Refusal:
    """A call refused with `code` and its ErrorInfo `reason`."""

    code: grpc.StatusCode
    reason: str

    def __str__(self) -> str:
        name = str(self.code.name)
        if not self.reason or self.reason == name:
            return name
        return f"{name} ({self.reason})"


def refusal(error: grpc.RpcError) -> Refusal:
    info = error_info(error)
    return Refusal(error.code(), info.reason if info is not None else "")


class Runner:
    """Numbers the steps, checks them, hands each result to `report`."""

    def __init__(self, report: Callable[[StepResult], None], wait_s: float) -> None:
        self.report = report
        self.wait_s = wait_s
        self.results: list[StepResult] = []

    def _done(self, actor: str, call: str, expected: str, outcome: str, ok: bool) -> None:
        result = StepResult(len(self.results) + 1, actor, call, expected, outcome, ok)
        self.results.append(result)
        self.report(result)
        if not ok:
            raise DemoError(
                f"step {result.number} ({actor}: {call}) expected {expected}, got {outcome}"
            )

    def check(self, actor: str, call: str, holds: bool, outcome: str) -> None:
        """A step that inspects what earlier calls returned."""
        self._done(actor, call, "true", outcome, holds)

    def ok(
        self,
        actor: str,
        call: str,
        action: Callable[[], T],
        describe: Callable[[T], str],
        *,
        until: Callable[[T], bool] | None = None,
        retry_codes: tuple[grpc.StatusCode, ...] = (),
    ) -> T:
        """Run `action` until it succeeds (and `until` holds); the step expects success."""
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                value = action()
            except grpc.RpcError as exc:
                refused = refusal(exc)
                if refused.code in retry_codes and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                self._done(actor, call, OK, str(refused), False)
                raise AssertionError("unreachable") from exc
            if until is None or until(value):
                self._done(actor, call, OK, describe(value), True)
                return value
            if time.monotonic() >= deadline:
                self._done(
                    actor, call, OK, f"{describe(value)} (not yet after {self.wait_s:g}s)", False
                )
            time.sleep(0.2)

    def refused(
        self,
        actor: str,
        call: str,
        action: Callable[[], object],
        codes: tuple[grpc.StatusCode, ...],
        *,
        wait: bool = False,
    ) -> Refusal:
        """Run `action`; the step expects a refusal with one of `codes`.

        With `wait`, a success is retried until the refusal (a decision cached
        before a block lives until the `consent.changed` event drops it).
        """
        expected = " or ".join(c.name for c in codes)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                action()
            except grpc.RpcError as exc:
                refused = refusal(exc)
                self._done(actor, call, expected, str(refused), refused.code in codes)
                return refused
            if not wait or time.monotonic() >= deadline:
                self._done(actor, call, expected, "OK (allowed!)", False)
            time.sleep(0.2)
