"""SIGKILL under load: records, consent, notify and the nats-server, each killed and restarted.

The whole platform runs as real processes, started by the launcher (`make run`'s code) for
this module alone. A doctor uploads and reads back documents for three patients through the
gateway (6 writers, 2 readers) while one part is SIGKILLed, left down, and started again the
way a supervisor would (same command, same database; for NATS the same port and JetStream
store). No manual step follows: the load goes on, then the checks of `tests.faults.harness`
run (only OK or UNAVAILABLE seen, no wrong read, every acknowledged document readable, a
retried request never doubled, each record holding exactly its requests' documents, every
document announced to its patient).

E-mails: one document-added announcement per document, counted by distinct Message-ID. When
notify itself is killed, a message the SMTP sink accepted just before the kill and not yet
recorded as sent is sent again after the lease, with the same Message-ID (the documented
at-least-once window of services/notify/dispatcher.py, at most `dispatch_concurrency` per
kill): there the raw count may exceed the distinct count by that much. Everywhere else the
raw count must equal it: exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack
from tests.faults.harness import (
    ALLOWED_DURING_FAULT,
    GATEWAY_ENV,
    RECOVERY_S,
    Ledger,
    Mailbox,
    Platform,
    S,
    check_nothing_lost_or_doubled,
    expected_announcements,
    kill_nats,
    settle,
    start_nats,
    under_load,
)

pytestmark = pytest.mark.slow

PATIENTS = 3
DOWN_S = 2.5  # longer than the gateway's decision cache below: the fault is felt
AFTER_S = 2.0  # load after the restart, before the checks
DISPATCH_CONCURRENCY = 16


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    """A platform of its own: these tests kill its processes."""
    extra_env = {
        "gateway": {**GATEWAY_ENV, "DMP_DECISION_CACHE_TTL_S": "1"},
        # A killed notify's claimed-but-unsent messages come back after the lease.
        "notify": {
            "DMP_SENDING_LEASE_S": "8",
            "DMP_SMTP_TIMEOUT_S": "5",
            "DMP_DISPATCH_CONCURRENCY": str(DISPATCH_CONCURRENCY),
        },
    }
    var_dir = tmp_path_factory.mktemp("faults-sigkill") / "var"
    async with running_stack(databases, var_dir, extra_env=extra_env) as stack:
        yield stack


async def kill(live: LiveStack, victim: str) -> None:
    if victim == "nats-server":
        await asyncio.to_thread(kill_nats, live)
    else:
        await live.kill_service(victim)


async def restart(live: LiveStack, victim: str) -> None:
    if victim == "nats-server":
        await asyncio.to_thread(start_nats, live)
    else:
        await live.start_service(victim)


async def recovered(ledger: Ledger, since: float, within_s: float = RECOVERY_S) -> None:
    """Until an upload succeeds after `since` (the load keeps going meanwhile)."""
    loop = asyncio.get_running_loop()
    while ledger.first_ok_after(since) is None and loop.time() < since + within_s:
        ledger.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.progress.wait(), timeout=1.0)


@pytest.mark.parametrize("victim", ["records", "consent", "notify", "nats-server"])
async def test_sigkill_under_load_loses_and_doubles_nothing(live: LiveStack, victim: str) -> None:
    platform = Platform(live)
    patients = [await platform.new_patient(i) for i in range(PATIENTS)]
    ledger = Ledger()

    async with under_load(platform, patients, ledger):
        killed_pid = live.pid(victim) if victim != "nats-server" else 0
        await kill(live, victim)
        await asyncio.sleep(DOWN_S)
        await restart(live, victim)
        restarted_at = asyncio.get_running_loop().time()
        if killed_pid:
            assert live.pid(victim) != killed_pid
        await recovered(ledger, restarted_at)
        await asyncio.sleep(AFTER_S)

    codes = ledger.codes()
    assert set(codes) <= ALLOWED_DURING_FAULT, (dict(codes), ledger.unexpected()[:5])
    assert not ledger.wrong_reads
    if victim in ("records", "consent"):
        # In the request path: callers felt the outage (the test is not vacuous).
        assert codes[S.UNAVAILABLE] > 0, dict(codes)
    else:
        # Not in the request path: nobody noticed.
        assert set(codes) == {S.OK}, dict(codes)
    assert len(ledger.acknowledged()) >= 20
    # Recovered on its own: uploads succeed again after the restart, before any manual step.
    recovery_s = ledger.first_ok_after(restarted_at)
    assert recovery_s is not None, "no upload succeeded after the restart"

    loop = asyncio.get_running_loop()
    started = loop.time()
    await settle(platform, ledger)
    await check_nothing_lost_or_doubled(platform, ledger)
    checked = loop.time()

    mailbox = Mailbox(live.mail_dir)
    expected = expected_announcements(ledger)
    await mailbox.wait_distinct(expected)
    # Anything sent twice would show up now: give a resend the time of one dispatch poll.
    await asyncio.sleep(1.0)
    got = mailbox.announcements()
    resent = sum(len(got[to]) - len(set(got[to])) for to in expected)
    for to, count in expected.items():
        distinct = len(set(got[to]))
        assert distinct == count, (to, distinct, count)
        extra = len(got[to]) - distinct
        if victim == "notify":
            assert extra <= DISPATCH_CONCURRENCY, (to, extra)
        else:
            assert extra == 0, (to, extra)
    print(
        f"\n{victim}: uploads {len(ledger.uploads)} "
        f"({sum(1 for u in ledger.uploads.values() if S.UNAVAILABLE in u.codes)} retried), "
        f"outcomes "
        f"{ {c.name: n for c, n in codes.items()} }, checks {checked - started:.1f}s, "
        f"mail {loop.time() - checked:.1f}s, first OK {recovery_s:.2f}s after the restart, "
        f"{sum(expected.values())} announcements, {resent} resent with the same Message-ID"
    )
    for process in live.dev.processes:
        assert process.exited() is None, f"{process.name} died"
