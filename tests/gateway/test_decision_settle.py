"""With several consent replicas, the one answering the Authorize right after a
`dmp.consent.changed` may not have applied the change yet: the gateway caches no decision about
that record for `settle_s` after the event, and none at all while its change feed is down
(events missed meanwhile), so a block holds at every gateway replica at once, not after a TTL."""

from __future__ import annotations

import grpc

from dmp.consent.v1 import consent_pb2_grpc
from gateway.authz import Decisions
from kit.clients import InternalCredentials

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decisions(clock: Clock) -> Decisions:
    # never called here; made on the running loop (grpc.aio needs one, as a test may run first)
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    return Decisions(
        consent_pb2_grpc.ConsentServiceStub(channel),
        InternalCredentials("gateway", "k1", {"k1": KEY}),
        "k1",
        KEY,
        settle_s=1.0,
        clock=clock,
    )


async def test_a_decision_asked_within_the_settle_window_is_not_cached() -> None:
    clock = Clock()
    d = decisions(clock)
    assert d._settled("dossiers/d1", clock.now)
    d.invalidate("dossiers/d1")
    # Asked just before the event (answer arriving after it) or within 1 s after: not kept.
    assert not d._settled("dossiers/d1", clock.now - 0.5)
    assert not d._settled("dossiers/d1", clock.now + 0.9)
    assert d._settled("dossiers/d1", clock.now + 1.1)
    assert d._settled("dossiers/d2", clock.now)  # other records keep their cache


async def test_everything_settles_again_after_a_reconnect_and_nothing_is_cached_while_down() -> (
    None
):
    clock = Clock()
    d = decisions(clock)
    d.caching = False  # the change feed's connection is down
    assert not d._settled("dossiers/d2", clock.now + 10)
    d.invalidate("")  # reconnected: events may have been missed
    d.caching = True
    assert not d._settled("dossiers/d2", clock.now + 0.5)
    assert d._settled("dossiers/d2", clock.now + 1.5)
