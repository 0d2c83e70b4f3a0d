"""Replica faults: 2 replicas of every service, 2 gateways, a 3-node NATS cluster, one of each
killed under load and started again. Shared by tests/replicas and bench/replica_faults.py.

The platform runs as real processes started by the launcher (`running_stack(..., replicas=2,
nats_nodes=3)`) on PostgreSQL. Clients reach the gateways the way a load balancer would spread
them: one channel over both gateways (round_robin), with kit.clients' retry policy (UNAVAILABLE,
reads and request-id mutations); the gateways reach the services the same way. The load mixes
uploads (CreateDocument with a request id), read-backs (GetDocument), the patients' consent
reads (ListAccessRules), the AMO feeder's claims ingest (IngestClaims with the AMO card, a few
care lines of the load's patients a batch, a batch every `CLAIM_EVERY_S`, at most
`CLAIM_BATCHES`) and patient logins (StartLogin, the one-time code read from the dev mail sink,
VerifyOneTimeCode, the issued token used once; at most `LOGINS`, argon2 costs a core-second
each). One at a time, the second replica of each
service, the second gateway and one NATS node are SIGKILLed; while it is down a patient blocks
the doctor on a record of its own and every running gateway replica is probed until it refuses
the doctor there; then the process is started again.

What is measured (and asserted by the test):
- `client_errors`: calls that reached the caller as an error. gRPC's retry policy retries an
  attempt that met a dead replica on another one; only what it could not hide counts;
- every acknowledged upload readable with its content, each record holding exactly its
  requests' documents;
- `claim_lines_lost` / `claim_lines_doubled`: lines of the ingested batches missing from, or
  shown more than once in, their patient's care history (GetCareHistory, one entry per line),
  after every batch was acknowledged (a batch whose caller saw an error is sent again with the
  same lines and request id, as the feeder must: ingestion is idempotent per line id);
- `logins` / `logins_failed`: logins that ended with a token the gateway accepts, and those
  that did not even when retried with their request ids (StartLogin and VerifyOneTimeCode are
  idempotent per request id, so a retry returns the first challenge, the first tokens);
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
from datetime import timedelta
from typing import Any

import grpc
from nats.aio.msg import Msg

from dmp.consent.v1 import consent_pb2
from dmp.consent.v1.events_pb2 import ConsentChanged
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.testing.stack import LiveStack
from kit import nats as kit_nats
from kit.errors import error_info
from tests.e2e.helpers import PASSWORD, mails_to, one_time_code, register_patient
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
from tests.fixtures.records import make_ins
from tests.history.lines import act
from tests.waits import until

R = records_pb2
C = consent_pb2
H = history_pb2
ID = identity_pb2
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
#: The claims ingest and the logins of the load: bounded, spread over the faults.
CLAIM_BATCHES = 16
CLAIM_LINES_PER_BATCH = 3
CLAIM_EVERY_S = 2.0
LOGINS = 6
LOGIN_EVERY_S = 4.0
LOGIN_PATIENTS = 2


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
    claim_lines: int = 0
    claim_lines_lost: int = 0
    claim_lines_doubled: int = 0
    logins: int = 0
    logins_failed: int = 0
    #: StartLogins answered REQUEST_ALREADY_PROCESSED: the replica that recorded the request
    #: died before answering, gRPC's retry reached another one, and identity does not replay
    #: a challenge; the client starts again with a new request id, as the answer says.
    logins_restarted: int = 0
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
            "claim_lines": self.claim_lines,
            "claim_lines_lost": self.claim_lines_lost,
            "claim_lines_doubled": self.claim_lines_doubled,
            "logins": self.logins,
            "logins_failed": self.logins_failed,
            "logins_restarted": self.logins_restarted,
            "block_propagation_ms_max": max(self.block_propagation_ms.values(), default=None),
            "block_propagation_ms": self.block_propagation_ms,
            "block_event_ms": self.block_event_ms,
            "block_refusal_answered_ms": self.block_refusal_answered_ms,
            "block_failures": self.block_failures,
            "first_ok_after_kill_s": self.first_ok_after_kill_s,
            "duration_s": round(self.duration_s, 1),
        }


@dataclass
class ClaimBatch:
    """One IngestClaims stream of the AMO feeder: one message, its lines for one patient."""

    patient: Patient
    request: history_pb2.IngestClaimsRequest
    acknowledged: bool = False


@dataclass
class LoginPatient:
    """A patient with an account (e-mail one-time codes) and no record: logs in only."""

    ins: str
    email: str


@dataclass
class Login:
    """One login, its request ids kept so that a retry is the same login."""

    who: LoginPatient
    seen: int  # the patient's e-mails before this login's StartLogin
    start_id: str = field(default_factory=rid)
    verify_id: str = field(default_factory=rid)
    challenge: str = ""
    token: str = ""


class Load:
    """Uploads, read-backs, consent reads, claims ingest and logins through the balanced
    gateways, until stopped."""

    def __init__(
        self,
        platform: Platform,
        patients: list[Patient],
        outcome: Outcome,
        login_patients: list[LoginPatient] | None = None,
    ) -> None:
        self.platform = platform
        self.patients = patients
        self.outcome = outcome
        self.login_patients = login_patients or []
        self.uploads: dict[str, Upload] = {}
        self.claims: list[ClaimBatch] = []
        self.logins: list[Login] = []
        self.claim_prefix = f"RF{uuid.uuid4().hex[:8]}"
        stack = platform.stack
        self.amo = history_pb2_grpc.HistoryFeedServiceStub(stack.card_channel("amo"))
        anonymous = stack.patient_channel()
        self.identity = identity_pb2_grpc.IdentityServiceStub(anonymous)
        self.patient_notify = notify_pb2_grpc.NotifyServiceStub(anonymous)
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

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    def new_claim_batch(self, number: int) -> ClaimBatch:
        patient = self.patients[number % len(self.patients)]
        today = self.platform.stack.clock.now().date()
        lines = [
            act(f"{self.claim_prefix}-{number}-{i}", patient.ins, today - timedelta(days=1 + i))
            for i in range(CLAIM_LINES_PER_BATCH)
        ]
        return ClaimBatch(patient, H.IngestClaimsRequest(lines=lines, request_id=rid()))

    async def ingest(self, batch: ClaimBatch) -> bool:
        """One IngestClaims stream of one message; every line accepted or a duplicate (an
        attempt that reached history_feed before)."""
        reply = await self._call(
            "IngestClaims",
            lambda: self.amo.IngestClaims(iter([batch.request]), timeout=CALL_TIMEOUT_S),
        )
        if reply is None:
            return False
        if reply.rejected_count or reply.accepted_count + reply.duplicate_count != len(
            batch.request.lines
        ):
            self.outcome.client_errors["IngestClaims WRONG_COUNTS"] += 1
            self.outcome.error_samples.append(f"IngestClaims counts: {reply}")
            return False
        batch.acknowledged = True
        return True

    async def claims_feeder(self) -> None:
        """The AMO's feed: a small batch every `CLAIM_EVERY_S`, at most `CLAIM_BATCHES`."""
        while not self.stop.is_set() and len(self.claims) < CLAIM_BATCHES:
            batch = self.new_claim_batch(len(self.claims))
            self.claims.append(batch)
            await self.ingest(batch)
            await self._pause(CLAIM_EVERY_S)

    async def log_in(self, login: Login) -> bool:
        """StartLogin, the code from the dev mail sink, VerifyOneTimeCode, and the token used
        once (the patient's contact preferences through a gateway)."""
        if not login.challenge:
            self.outcome.calls["StartLogin"] += 1
            try:
                started = await self.identity.StartLogin(
                    ID.StartLoginRequest(
                        request_id=login.start_id, identifier=login.who.ins, password=PASSWORD
                    ),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as err:
                info = error_info(err)
                if info is not None and info.reason == "REQUEST_ALREADY_PROCESSED":
                    self.outcome.logins_restarted += 1
                    login.start_id = rid()
                    # The lost attempt may still mail its code: let it arrive first, so that
                    # the next e-mail read is the new attempt's code, not the lost one's.
                    with contextlib.suppress(AssertionError):
                        await one_time_code(
                            self.platform.stack.mail_dir, login.who.email, login.seen
                        )
                    login.seen = len(mails_to(self.platform.stack.mail_dir, login.who.email))
                else:
                    self.outcome.error("StartLogin", err)
                await asyncio.sleep(0.1)
                return False
            login.challenge = started.challenge
        if not login.token:
            try:
                code = await one_time_code(
                    self.platform.stack.mail_dir, login.who.email, login.seen
                )
            except AssertionError:  # no code within its wait: a lost code, counted
                self.outcome.client_errors["StartLogin NO_CODE"] += 1
                self.outcome.error_samples.append(f"no one-time code for login {login.start_id}")
                return False
            verified = await self._call(
                "VerifyOneTimeCode",
                lambda: self.identity.VerifyOneTimeCode(
                    ID.VerifyOneTimeCodeRequest(
                        request_id=login.verify_id, challenge=login.challenge, code=code
                    ),
                    timeout=CALL_TIMEOUT_S,
                ),
            )
            if verified is None:
                return False
            login.token = verified.tokens.access_token
        prefs = await self._call(
            "GetContactPreferences",
            lambda: self.patient_notify.GetContactPreferences(
                notify_pb2.GetContactPreferencesRequest(
                    name=f"patients/{login.who.ins}/contactPreferences"
                ),
                metadata=_bearer(login.token),
                timeout=CALL_TIMEOUT_S,
            ),
        )
        return prefs is not None

    async def login_loop(self) -> None:
        """A login every `LOGIN_EVERY_S`, at most `LOGINS`, one at a time (each patient's
        codes are told apart by the e-mails it had before)."""
        while not self.stop.is_set() and self.login_patients and len(self.logins) < LOGINS:
            who = self.login_patients[len(self.logins) % len(self.login_patients)]
            login = Login(who, len(mails_to(self.platform.stack.mail_dir, who.email)))
            self.logins.append(login)
            await self.log_in(login)
            await self._pause(LOGIN_EVERY_S)

    async def run(self, *, writers: int = 4, readers: int = 2, max_uploads: int = 2000) -> None:
        await asyncio.gather(
            *(self.writer(i, max_uploads) for i in range(writers)),
            *(self.reader(i) for i in range(readers)),
            self.consent_reader(),
            self.claims_feeder(),
            self.login_loop(),
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
    login_patients = [await new_login_patient(stack, i) for i in range(LOGIN_PATIENTS)]
    load = Load(platform, load_patients, outcome, login_patients)
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
    await _finish_claims(load)
    await _finish_logins(load, outcome)
    await _count_events(stack, platform, load, outcome)
    await _count_claim_lines(platform, load, outcome)
    outcome.duration_s = time.monotonic() - started
    return outcome


async def new_login_patient(stack: LiveStack, number: int) -> LoginPatient:
    """A real sign-up (creation code from the desk, account with an e-mail for codes)."""
    ins = make_ins()
    email = f"login{number}.{ins[-6:]}@example.test"
    await register_patient(stack, ins, email)
    return LoginPatient(ins, email)


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


async def _finish_claims(load: Load) -> None:
    """A batch whose caller saw an error is sent again, same lines and request id, until
    acknowledged: the feeder's duty; the lines must then be in the history once each."""
    for batch in load.claims:
        deadline = time.monotonic() + RECOVERY_S
        while not batch.acknowledged:
            if time.monotonic() > deadline:
                raise AssertionError(f"claims batch {batch.request.request_id} never acknowledged")
            if not await load.ingest(batch):
                await asyncio.sleep(0.2)


async def _finish_logins(load: Load, outcome: Outcome) -> None:
    """A login whose caller saw an error is carried on with its request ids (a retry of
    StartLogin returns the first challenge, no second code)."""
    for login in load.logins:
        deadline = time.monotonic() + RECOVERY_S
        while not await load.log_in(login):
            if time.monotonic() > deadline:
                outcome.logins_failed += 1
                break
            await asyncio.sleep(0.2)
        else:
            outcome.logins += 1


async def _care_history_line_ids(platform: Platform, patient: Patient) -> Counter[str]:
    """Every line id in the patient's care history (one entry per line, every page)."""
    stub = history_pb2_grpc.HistoryFeedServiceStub(platform.stack.patient_channel())
    md = _bearer(platform.stack.token(patient.ins))
    found: Counter[str] = Counter()
    token = ""
    while True:
        reply = await stub.GetCareHistory(
            H.GetCareHistoryRequest(
                name=f"{patient.dossier}/careHistory",
                drug_grouping=H.DRUG_GROUPING_NONE,
                page_size=200,
                page_token=token,
            ),
            metadata=md,
            timeout=CALL_TIMEOUT_S,
        )
        found.update(e.line.line_id for e in reply.entries)
        token = reply.next_page_token
        if not token:
            return found


async def _count_claim_lines(platform: Platform, load: Load, outcome: Outcome) -> None:
    """Every line of every (acknowledged) batch shown once in its patient's care history.
    A record's lines are materialized at ingest, or from records' event if history_feed had
    not learned of the record yet: wait until each is complete, then count."""
    expected: dict[str, set[str]] = {}
    patients = {p.dossier: p for p in load.patients}
    for batch in load.claims:
        expected.setdefault(batch.patient.dossier, set()).update(
            line.line_id for line in batch.request.lines
        )
    outcome.claim_lines = sum(len(ids) for ids in expected.values())
    shown: dict[str, Counter[str]] = {}

    async def complete() -> bool:
        for dossier, ids in expected.items():
            shown[dossier] = await _care_history_line_ids(platform, patients[dossier])
            if not ids <= set(shown[dossier]):
                return False
        return True

    with contextlib.suppress(AssertionError):
        await until(
            complete, "every claim line in its care history", within_s=RECOVERY_S, every_s=0.5
        )
    for dossier, ids in expected.items():
        ours = {k: v for k, v in shown.get(dossier, Counter()).items() if k in ids}
        outcome.claim_lines_lost += len(ids - set(ours))
        outcome.claim_lines_doubled += sum(v - 1 for v in ours.values() if v > 1)
        # A line of this run that no batch sent would be a phantom: count it as doubled.
        outcome.claim_lines_doubled += sum(
            1
            for k in shown.get(dossier, Counter())
            if k.startswith(load.claim_prefix) and k not in ids
        )


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
