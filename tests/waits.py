"""Waits for a condition with a deadline, and the markers that prove "nothing happened".

A test never sleeps for a fixed time before an assertion: a sleep either wastes time or,
on a busy machine, passes while the thing it waited for has not happened yet. It waits
for a condition instead (`until`). A negative check ("nothing was sent") first waits
for a positive marker that the pipeline has processed past the point in question — a
consumer's acknowledged position (`consumed_through`), a server's finished calls
(`finished_calls`) — and only then looks for the absence.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable

from nats.js.api import PubAck
from prometheus_client import REGISTRY

from kit.consumer import DurableConsumer

WITHIN_S = 20.0


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within_s: float = WITHIN_S,
    every_s: float = 0.02,
) -> None:
    """Until `condition()` (a function or a coroutine function) is true; fail after
    `within_s` saying `what` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not after {within_s}s: {what}")
        await asyncio.sleep(every_s)


def matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    pattern, tokens = filter_subject.split("."), subject.split(".")
    for index, part in enumerate(pattern):
        if part == ">":
            return len(tokens) > index
        if index >= len(tokens) or (part not in ("*", tokens[index])):
            return False
    return len(pattern) == len(tokens)


async def consumed_through(
    consumers: Iterable[DurableConsumer],
    ack: PubAck,
    subject: str,
    *,
    within_s: float = WITHIN_S,
) -> None:
    """Until every consumer of `ack.stream` whose filter takes `subject` has acknowledged
    (or terminated) every message up to the published one: its handler ran to the end and
    committed what the message causes (nothing, for a message that must cause nothing)."""
    mine = [
        c
        for c in consumers
        if c.spec.stream == ack.stream and matches(c.spec.filter_subject, subject)
    ]
    assert mine, f"no consumer of {ack.stream} takes {subject}"

    async def through() -> bool:
        for consumer in mine:
            info = await consumer.info()
            if info is None or int(info.ack_floor.stream_seq or 0) < ack.seq:
                return False
        return True

    await until(through, f"{subject} #{ack.seq} consumed", within_s=within_s)


def finished_calls(service: str, method: str) -> float:
    """How many calls of `method` the in-process servers of `service` have ended (any
    status, cancellation included): a call's handler is over once it is counted."""
    value = REGISTRY.get_sample_value(
        "dmp_rpc_duration_seconds_count", {"service": service, "method": method}
    )
    return value or 0.0
