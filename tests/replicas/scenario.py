"""Replica faults: 2 replicas of every service, 2 gateways, a 3-node NATS cluster, one of each
killed under load and started again. Shared by tests/replicas and bench/replica_faults.py.

The platform runs as real processes started by the launcher (`running_stack(..., replicas=2,
nats_nodes=3)`) on PostgreSQL. Clients reach the gateways the way a load balancer would spread
them: one channel over both gateways (round_robin), with kit.clients' retry policy (UNAVAILABLE,
reads and request-id mutations); the gateways reach the services the same way. The load mixes
uploads (CreateDocument with a request id), read-backs (GetDocument), the patients' consent
reads (ListAccessRules) and care history reads. One at a time, the second replica of each
service, the second gateway and one NATS node are SIGKILLed; while it is down a patient blocks
the doctor on a record of its own and every running gateway replica is probed until it refuses
the doctor there; then the process is started again.

What is measured (and asserted by the test):
- `client_errors`: calls that reached the caller as an error. gRPC's retry policy retries an
  attempt that met a dead replica on another one; only what it could not hide counts;
- every acknowledged upload readable with its content, each record holding exactly its
  requests' documents;
- `events_lost` / `events_doubled`: document-added e-mails (records' outbox -> JetStream ->
  notify's consumer -> the dev mail sink) missing, or more than one distinct e-mail for a
  document. A SIGKILLed notify may send again, with the same Message-ID, an e-mail the SMTP
  sink accepted just before the kill (notify's documented at-least-once window, at most its
  send slots): counted apart as `emails_resent_same_message_id`;
- `block_propagation_ms_max`: from the block's acknowledgement until every running gateway
  replica refuses the doctor: the send time of the first refused call after the last
  allowed one, probes sent every 100 ms (at most 3 in flight) per gateway
  (`block_refusal_answered_ms` adds the refused call's own latency; `block_event_ms` is when
  the block's event reached a NATS client);
- `first_ok_after_kill_s`: per component, from the kill to the first upload acknowledged
  after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from nats.aio.msg import Msg

from dmp.consent.v1 import consent_pb2
from dmp.consent.v1.events_pb2 import ConsentChanged
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.testing.stack import LiveStack
from kit import nats as kit_nats
from tests.faults.harness import (
    CALL_TIMEOUT_S,
    GATEWAY_ENV,
    Mailbox,
    Patient,
    Platform,
    Upload,
    check_nothing_lost_or_doubled,
    expected_announcements,
    unsent_notifications,
)
from tests.waits import until

R = records_pb2
C = consent_pb2
S = grpc.StatusCode

REPLICAS = 2
NATS_NODES = 3
#: What is killed, in order: the second replica of each service and of the gateway, a NATS node.
VICTIMS = ("records-2", "consent-2", "identity-2", "notify-2", "history_feed-2", "gateway-2")
NATS_VICTIM = "nats-2"
# PostgreSQL frugality: 2 replicas x 5 services + 2 gateways share max_connections (100) with
# every other run: at most 4 connections a process.
FRUGAL_POOLS = {"DMP_DATABASE_POOL_SIZE": "2", "DMP_DATABASE_MAX_OVERFLOW": "2"}
NOTIFY_SLOTS = 4
BLOCK_WITHIN_S = 1.0
REFUSED = (S.NOT_FOUND, S.PERMISSION_DENIED)
CONSENT_CHANGED = "dmp.consent.changed"
PROBE_CONFIRM = 3
PROBE_EVERY_S = 0.1
PROBE_IN_FLIGHT = 3
RECOVERY_S = 60.0


def stack_env() -> dict[str, dict[str, str]]:
    services = ("identity", "records", "consent", "history_feed")
    env: dict[str, dict[str, str]] = {name: dict(FRUGAL_POOLS) for name in services}
    env["notify"] = {
        **FRUGAL_POOLS,
        "DMP_DISPATCH_CONCURRENCY": str(NOTIFY_SLOTS),
        "DMP_SENDING_LEASE_S": "8",
        "DMP_SMTP_TIMEOUT_S": "5",
    }
    # The decision cache keeps its production TTL (5 s): a block must reach every replica by
    # event (and the settle window), not by expiry.
    env["gateway"] = dict(GATEWAY_ENV)
    return env


def rid() -> str:
    return str(uuid.uuid4())


@dataclass
class Outcome:
    client_errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    first_ok_after_kill_s: dict[str, float | None] = field(default_factory=dict)
    block_propagation_ms: dict[str, float] = field(default_factory=dict)
    block_event_ms: dict[str, float] = field(default_factory=dict)
    block_refusal_answered_ms: dict[str, float] = field(default_factory=dict)
    block_failures: list[str] = field(default_factory=list)
    events_lost: int = 0
    events_doubled: int = 0
    emails_resent_same_message_id: int = 0
    documents: int = 0
    duration_s: float = 0.0

    def error(self, what: str, err: grpc.aio.AioRpcError) -> None:
        self.client_errors[f"{what} {err.code().name}"] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{what}: {err.code().name} {err.details()}")

    def summary(self) -> dict[str, Any]:
        return {
            "client_errors": sum(self.client_errors.values()),
            "client_errors_by_call": dict(self.client_errors),
            "error_samples": self.error_samples,
            "calls": dict(self.calls),
            "events_lost": self.events_lost,
            "events_doubled": self.events_doubled,
            "emails_resent_same_message_id": self.emails_resent_same_message_id,
            "documents": self.documents,
            "block_propagation_ms_max": max(self.block_propagation_ms.values(), default=None),
            "block_propagation_ms": self.block_propagation_ms,
            "block_event_ms": self.block_event_ms,
            "block_refusal_answered_ms": self.block_refusal_answered_ms,
            "block_failures": self.block_failures,
            "first_ok_after_kill_s": self.first_ok_after_kill_s,
            "duration_s": round(self.duration_s, 1),
        }


class Load:
    """Uploads, read-backs and consent reads through the balanced gateways, until stopped."""

    def __init__(self, platform: Platform, patients: list[Patient], outcome: Outcome) -> None:
        self.platform = platform
        self.patients = patients
        self.outcome = outcome
        self.uploads: dict[str, Upload] = {}
        self.stop = asyncio.Event()
        self.progress = asyncio.Event()
        self.ok_times: list[float] = []

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        self.outcome.calls[what] += 1
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            self.outcome.error(what, err)
            await asyncio.sleep(0.1)
            return None

    async def writer(self, index: int, max_uploads: int) -> None:
        turn = index
        while not self.stop.is_set() and len(self.uploads) < max_uploads:
            patient = self.patients[turn % len(self.patients)]
            turn += 1
            upload = self.platform.new_upload(patient, _ledger_of(self))
            created = await self._call(
                "CreateDocument",
                lambda u=upload: self.platform.doctor.CreateDocument(
                    u.request, timeout=CALL_TIMEOUT_S
                ),
            )
            if created is not None:
                upload.name = created.name
                upload.ok_at = time.monotonic()
                self.ok_times.append(upload.ok_at)
                self.progress.set()

    async def reader(self, index: int) -> None:
        turn = index
        while not self.stop.is_set():
            done = [u for u in self.uploads.values() if u.name]
            if not done:
                await asyncio.sleep(0.05)
                continue
            upload = done[turn % len(done)]
            turn += 7
            got = await self._call(
                "GetDocument",
                lambda u=upload: self.platform.doctor.GetDocument(
                    R.GetDocumentRequest(name=u.name), timeout=CALL_TIMEOUT_S
                ),
            )
            if got is not None and hashlib.sha256(got.content).hexdigest() != upload.content_sha:
                self.outcome.error_samples.append(f"wrong content read for {upload.name}")
                self.outcome.client_errors["GetDocument WRONG_CONTENT"] += 1

    async def consent_reader(self) -> None:
        turn = 0
        while not self.stop.is_set():
            patient = self.patients[turn % len(self.patients)]
            turn += 1
            md = _bearer(self.platform.stack.token(patient.ins))
            await self._call(
                "ListAccessRules",
                lambda p=patient, m=md: self.platform.patient_consent.ListAccessRules(
                    C.ListAccessRulesRequest(parent=p.dossier), metadata=m, timeout=CALL_TIMEOUT_S
                ),
            )
            await asyncio.sleep(0.05)

    async def run(self, *, writers: int = 4, readers: int = 2, max_uploads: int = 2000) -> None:
        await asyncio.gather(
            *(self.writer(i, max_uploads) for i in range(writers)),
            *(self.reader(i) for i in range(readers)),
            self.consent_reader(),
        )

    def first_ok_after(self, moment: float) -> float | None:
        after = [t for t in self.ok_times if t > moment]
        return min(after) - moment if after else None


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class _LedgerView:
    """What `Platform.new_upload` needs of a ledger: the uploads by request id."""

    def __init__(self, uploads: dict[str, Upload]) -> None:
        self.uploads = uploads


def _ledger_of(load: Load) -> Any:
    return _LedgerView(load.uploads)


async def block_round(
    stack: LiveStack, platform: Platform, patient: Patient, label: str, outcome: Outcome
) -> None:
    """The patient blocks the doctor on its record; every running gateway replica must refuse
    the doctor there within `BLOCK_WITHIN_S` of the block's acknowledgement.

    Each gateway first serves the doctor an allowed read, so its decision cache holds the
    allowed decision the block must displace."""
    gateways = [
        r
        for r, name in enumerate(stack.gateway_names)
        if await asyncio.to_thread(stack.dev.process(name).serving)  # not killed, not starting
    ]
    doctors = {
        r: records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor", replica=r))
        for r in gateways
    }
    for stub in doctors.values():
        await stub.GetDossier(R.GetDossierRequest(name=patient.dossier), timeout=CALL_TIMEOUT_S)
    md = _bearer(stack.token(patient.ins))
    # When the block's dmp.consent.changed reaches a NATS client (as it reaches the gateways):
    # tells the event's delay (outbox relay, R3 publish) from the probes' own latency.
    event_seen = asyncio.Event()
    nc = await kit_nats.connect(stack.cfg.nats_url, "replica-faults-probe")

    async def on_changed(msg: Msg) -> None:
        if ConsentChanged.FromString(msg.data).dossier == patient.dossier:
            event_seen.set()

    await nc.subscribe(CONSENT_CHANGED, cb=on_changed)
    await nc.flush()
    await platform.patient_consent.BlockProfessional(
        C.BlockProfessionalRequest(
            parent=patient.dossier,
            professional_rpps=pki.DEMO_CARDS["doctor"].rpps,
            request_id=rid(),
        ),
        metadata=md,
        timeout=CALL_TIMEOUT_S,
    )
    blocked_at = time.monotonic()
    refused: dict[int, float] = {}
    answered: dict[int, float] = {}

    async def probe(r: int) -> None:
        """Send the doctor's read to this gateway every `PROBE_EVERY_S`, without waiting for
        the answers (on a busy machine one takes hundreds of ms, which would be the
        resolution otherwise) but never more than `PROBE_IN_FLIGHT` at once (each uncached
        decision writes an access-log entry at consent), until `PROBE_CONFIRM` calls in a
        row were refused. The propagation is the send time of the first refused call after
        the last allowed one: every call sent after it was refused."""
        calls: list[tuple[float, asyncio.Task[Any], list[float]]] = []

        async def one() -> None:
            await doctors[r].GetDossier(
                R.GetDossierRequest(name=patient.dossier), timeout=CALL_TIMEOUT_S
            )

        def streak() -> int:
            count = 0
            for _, task, _ in reversed(calls):
                if not task.done():
                    continue
                if not _refused(task):
                    break
                count += 1
            return count

        while time.monotonic() < blocked_at + 10 and streak() < PROBE_CONFIRM:
            if sum(1 for _, t, _ in calls if not t.done()) < PROBE_IN_FLIGHT:
                done_at: list[float] = []
                task = asyncio.create_task(one())
                task.add_done_callback(lambda _t, d=done_at: d.append(time.monotonic()))
                calls.append((time.monotonic(), task, done_at))
            await asyncio.sleep(PROBE_EVERY_S)
        await asyncio.gather(*(t for _, t, _ in calls), return_exceptions=True)
        for _, task, _ in calls:
            err = task.exception()
            if isinstance(err, grpc.aio.AioRpcError) and err.code() not in REFUSED:
                outcome.error("GetDossier (block probe)", err)
        last_allowed = max((t for t, task, _ in calls if task.exception() is None), default=0.0)
        after = [(t, d) for t, task, d in calls if t > last_allowed]
        if after and all(_refused(task) for t, task, _ in calls if t > last_allowed):
            refused[r] = max(0.0, after[0][0] - blocked_at)
            answered[r] = after[0][1][0] - blocked_at

    async def event() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event_seen.wait(), 10)
            outcome.block_event_ms[label] = round((time.monotonic() - blocked_at) * 1000, 1)

    await asyncio.gather(event(), *(probe(r) for r in gateways))
    await nc.close()
    if len(refused) < len(gateways):
        outcome.block_failures.append(f"{label}: gateways {set(gateways) - set(refused)}")
    outcome.block_propagation_ms[label] = round(max(refused.values(), default=10.0) * 1000, 1)
    outcome.block_refusal_answered_ms[label] = round(max(answered.values(), default=10.0) * 1000, 1)


def _refused(task: asyncio.Task[Any]) -> bool:
    """A blocked professional is told the record does not exist (rule 2)."""
    err = task.exception()
    return isinstance(err, grpc.aio.AioRpcError) and err.code() in REFUSED


async def kill(stack: LiveStack, victim: str) -> None:
    if victim.startswith("nats"):
        await stack.kill_nats_node(victim)
    else:
        await stack.kill_service(victim)


async def restart(stack: LiveStack, victim: str) -> None:
    if victim.startswith("nats"):
        await stack.start_nats_node(victim)
    else:
        await stack.start_service(victim)


async def run_scenario(
    stack: LiveStack, *, patients: int = 3, during: int = 5, quick: bool = False
) -> Outcome:
    """Kill and restart each victim under the load; then settle and count. Bounded: each
    outage lasts until `during` uploads were acknowledged after the kill (at most 20 s),
    its restart overlaps the next one's outage."""
    outcome = Outcome()
    started = time.monotonic()
    platform = Platform(stack)
    load_patients = [await platform.new_patient(i) for i in range(patients)]
    victims = (*VICTIMS, NATS_VICTIM)
    if quick:
        victims = ("records-2", "gateway-2", NATS_VICTIM)
    blocked = [await platform.new_patient(100 + i) for i in range(len(victims))]
    load = Load(platform, load_patients, outcome)
    runner = asyncio.create_task(load.run())
    restarts: list[asyncio.Task[None]] = []
    try:
        await until(lambda: len(load.ok_times) >= 10, "the load is running", within_s=60)
        for victim, patient in zip(victims, blocked, strict=True):
            killed_at = time.monotonic()
            await kill(stack, victim)
            await block_round(stack, platform, patient, victim, outcome)
            with contextlib.suppress(AssertionError):
                await until(
                    lambda k=killed_at: sum(1 for t in load.ok_times if t > k) >= during,
                    f"{during} uploads acknowledged with {victim} down",
                    within_s=20,
                )
            outcome.first_ok_after_kill_s[victim] = _rounded(load.first_ok_after(killed_at))
            # Started again in the background (a supervisor's restart takes seconds on a busy
            # machine) while the next component is killed: two different ones down at once.
            restarts.append(asyncio.create_task(restart(stack, victim)))
            print(
                f"{victim}: down {time.monotonic() - killed_at:.1f}s, first OK "
                f"after {outcome.first_ok_after_kill_s[victim]}s, block refused at every "
                f"gateway in {outcome.block_propagation_ms[victim]} ms "
                f"(event at {outcome.block_event_ms.get(victim)} ms), "
                f"errors so far {sum(outcome.client_errors.values())}",
                flush=True,
            )
        await asyncio.gather(*restarts)
        restarted_at = time.monotonic()
        await until(
            lambda: sum(1 for t in load.ok_times if t > restarted_at) >= during,
            "uploads acknowledged after the last restart",
            within_s=RECOVERY_S,
        )
    finally:
        load.stop.set()
        await runner
        await asyncio.gather(*restarts, return_exceptions=True)
    await _finish_uploads(platform, load, outcome)
    await _count_events(stack, platform, load, outcome)
    outcome.duration_s = time.monotonic() - started
    return outcome


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def _finish_uploads(platform: Platform, load: Load, outcome: Outcome) -> None:
    """An upload whose caller saw an error is sent again with its request id, as a client
    must: it yields one document however many attempts reached records."""
    for upload in load.uploads.values():
        deadline = time.monotonic() + RECOVERY_S
        while not upload.name:
            try:
                created = await platform.doctor.CreateDocument(
                    upload.request, timeout=CALL_TIMEOUT_S
                )
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            upload.name = created.name


async def _count_events(stack: LiveStack, platform: Platform, load: Load, outcome: Outcome) -> None:
    ledger: Any = _LedgerView(load.uploads)
    await check_nothing_lost_or_doubled(platform, ledger)
    outcome.documents = len(load.uploads)
    expected = expected_announcements(ledger)
    mailbox = Mailbox(stack.mail_dir)
    with contextlib.suppress(AssertionError):
        await mailbox.wait_distinct(expected, within_s=RECOVERY_S)

    async def nothing_to_send() -> bool:
        return await unsent_notifications(stack) == 0

    await until(nothing_to_send, "notify has nothing left to send", within_s=RECOVERY_S)
    got = mailbox.announcements()
    for to, count in expected.items():
        distinct = len(set(got.get(to, [])))
        outcome.events_lost += max(0, count - distinct)
        outcome.events_doubled += max(0, distinct - count)
        outcome.emails_resent_same_message_id += len(got.get(to, [])) - distinct
