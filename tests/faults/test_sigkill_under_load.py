"""SIGKILL under load: records, consent, notify and the nats-server, each killed and restarted.

The whole platform runs as real processes, started by the launcher (`make run`'s code) for
the fault tests (tests/faults/conftest.py). A doctor uploads and reads back documents for
three patients through the gateway (6 writers, 2 readers) while one part is SIGKILLed, left
down until the outage is felt (a caller told UNAVAILABLE where the part is in the request
path, else uploads acknowledged meanwhile), and started again the way a supervisor would
(same command, same database; for NATS the same port and JetStream store). No manual step
follows: the load goes on, then the checks of `tests.faults.harness` run (only OK or
UNAVAILABLE seen, no wrong read, every acknowledged document readable, a retried request
never doubled, each record holding exactly its requests' documents, every document
announced to its patient).

E-mails: one document-added announcement per document, counted by distinct Message-ID. When
notify itself is killed, a message the SMTP sink accepted just before the kill and not yet
recorded as sent is sent again after the lease, with the same Message-ID (the documented
at-least-once window of services/notify/dispatcher.py, at most `dispatch_concurrency` per
kill): there the raw count may exceed the distinct count by that much. Everywhere else the
raw count must equal it: exactly once. The count is taken once notify has nothing left to
send (no row pending or claimed), so no second copy can come after it.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dmp_dev.testing.stack import LiveStack
from tests.faults.harness import (
    ALLOWED_DURING_FAULT,
    DISPATCH_CONCURRENCY,
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
    unsent_notifications,
)
from tests.waits import until

# One worker runs every fault test: they share the package's platform (`live`).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

PATIENTS = 3
# Uploads acknowledged while a part out of the request path is down, and after the restart
# before the checks: the load goes on through the outage and after it.
DURING = 10
AFTER = 10
OUTAGE_S = 30.0  # deadline for the outage to be felt


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

    loop = asyncio.get_running_loop()
    async with under_load(platform, patients, ledger):
        killed_pid = live.pid(victim) if victim != "nats-server" else 0
        await kill(live, victim)
        killed_at = loop.time()
        if victim in ("records", "consent"):
            # In the request path: down until a caller is told UNAVAILABLE (consent's
            # decisions first outlive it in the gateway's 1 s cache).
            await until(
                lambda: ledger.refused_after(killed_at, S.UNAVAILABLE),
                f"a caller told UNAVAILABLE with {victim} down",
                within_s=OUTAGE_S,
            )
        else:
            await until(
                lambda: ledger.acknowledged_after(killed_at) >= DURING,
                f"{DURING} uploads acknowledged with {victim} down",
                within_s=OUTAGE_S,
            )
        await restart(live, victim)
        restarted_at = loop.time()
        if killed_pid:
            assert live.pid(victim) != killed_pid
        await recovered(ledger, restarted_at)
        await until(
            lambda: ledger.acknowledged_after(restarted_at) >= AFTER,
            f"{AFTER} uploads acknowledged after the restart",
            within_s=RECOVERY_S,
        )

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

    started = loop.time()
    await settle(platform, ledger)
    await check_nothing_lost_or_doubled(platform, ledger)
    checked = loop.time()

    mailbox = Mailbox(live.mail_dir)
    expected = expected_announcements(ledger)
    await mailbox.wait_distinct(expected)

    # Nothing left to send (a killed notify's claims resent after their lease): every copy,
    # a second one included, is in the mailbox now.
    async def nothing_to_send() -> bool:
        return await unsent_notifications(live) == 0

    await until(nothing_to_send, "notify has nothing left to send", within_s=RECOVERY_S)
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
