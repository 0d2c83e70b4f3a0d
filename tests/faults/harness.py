"""Load, ledger and checks shared by the fault tests (a launcher-started platform, real processes).

Every call goes through the gateway's public ports with real cards or patient tokens. The
ledger keeps, per CreateDocument request id, what the client was told; after recovery the
checks hold the platform to it:

- a client is told OK or UNAVAILABLE, nothing else (never a wrong answer, never INTERNAL);
- every document acknowledged OK is readable, with the content that was sent;
- retrying a request the client saw fail (same request id, as a client must) yields one
  document: a request the server did before dying is not done twice;
- each record holds exactly the documents of its requests (nothing phantom, nothing twice);
- every document is announced to its patient by e-mail exactly once (distinct Message-IDs;
  the raw count is checked separately by the caller, see `Mailbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import func, select

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.launcher.nats_server import wait_for_port
from dmp_dev.testing.stack import LiveStack
from services.notify import models as notify_models
from tests.e2e.helpers import bearer, eventually
from tests.fixtures import sql
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request, doc

R = records_pb2
S = grpc.StatusCode
CALL_TIMEOUT_S = 10.0
RECOVERY_S = 60.0
DOCUMENT_ADDED_SUBJECT = "Un nouveau document est disponible dans votre DMP"
# What a caller may be told while a part of the platform is down.
ALLOWED_DURING_FAULT = {S.OK, S.UNAVAILABLE}
WARM_UP = 20
# The gateway limits calls per principal; the load uses one doctor card.
GATEWAY_ENV = {"DMP_RATE_LIMIT_PER_S": "100000", "DMP_RATE_LIMIT_BURST": "100000"}
# notify's send slots: a killed notify may send again at most this many accepted e-mails.
DISPATCH_CONCURRENCY = 16
# history_feed commits claims per this many lines: one IngestClaims message of the drain
# test, so its lines stored prove the stream is open at history_feed.
CLAIM_COMMIT_LINES = 200


def rid() -> str:
    return str(uuid.uuid4())


@dataclass
class Patient:
    ins: str
    dossier: str
    email: str


@dataclass
class Upload:
    """One CreateDocument request id and what its caller was told, attempt after attempt."""

    patient: Patient
    request: R.CreateDocumentRequest
    codes: list[grpc.StatusCode] = field(default_factory=list)
    name: str = ""  # set once an attempt returned OK
    ok_at: float = 0.0  # event-loop time of the last OK
    refused_at: dict[grpc.StatusCode, float] = field(default_factory=dict)  # last, per code
    unexpected: list[str] = field(default_factory=list)  # code and details of odd answers

    @property
    def content_sha(self) -> str:
        return hashlib.sha256(self.request.document.content).hexdigest()


@dataclass
class Ledger:
    uploads: dict[str, Upload] = field(default_factory=dict)
    reads: Counter[grpc.StatusCode] = field(default_factory=Counter)
    wrong_reads: list[str] = field(default_factory=list)
    #: Set once WARM_UP uploads were acknowledged: the load is in its steady state.
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set after each acknowledged upload (waiters clear it).
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def codes(self) -> Counter[grpc.StatusCode]:
        return Counter(code for u in self.uploads.values() for code in u.codes) + self.reads

    def unexpected(self) -> list[str]:
        return [text for u in self.uploads.values() for text in u.unexpected]

    def acknowledged(self) -> list[Upload]:
        return [u for u in self.uploads.values() if u.name]

    def first_ok_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first upload acknowledged after it."""
        after = [u.ok_at for u in self.uploads.values() if u.ok_at > moment]
        return min(after) - moment if after else None

    def acknowledged_after(self, moment: float) -> int:
        """Uploads whose last OK came after `moment` (event-loop time)."""
        return sum(1 for u in self.uploads.values() if u.ok_at > moment)

    def refused_after(self, moment: float, code: grpc.StatusCode) -> bool:
        """Whether a caller was told `code` after `moment` (an outage felt)."""
        return any(u.refused_at.get(code, 0.0) > moment for u in self.uploads.values())


class Platform:
    """The stack's public face for one doctor and a few patients."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        self.doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor"))
        self.desk = records_pb2_grpc.RecordsServiceStub(stack.card_channel("desk"))
        patient_channel = stack.patient_channel()
        self.patient_records = records_pb2_grpc.RecordsServiceStub(patient_channel)
        self.patient_consent = consent_pb2_grpc.ConsentServiceStub(patient_channel)
        self.patient_notify = notify_pb2_grpc.NotifyServiceStub(patient_channel)

    async def new_patient(self, number: int) -> Patient:
        """A record created at the desk, an e-mail for new documents, the doctor granted."""
        ins = make_ins()
        dossier = await self.desk.CreateDossier(create_request(ins), timeout=CALL_TIMEOUT_S)
        md = bearer(self.stack.token(ins))
        # consent learns of the record by event: wait until the patient may read it.
        await eventually(
            lambda: self.patient_records.GetDossier(
                R.GetDossierRequest(name=dossier.name), metadata=md, timeout=CALL_TIMEOUT_S
            ),
            retry_on=(S.NOT_FOUND, S.FAILED_PRECONDITION),
            within_s=RECOVERY_S,
        )
        email = f"patient{number}.{ins[-6:]}@example.test"
        await self.patient_notify.SetContactPreferences(
            notify_pb2.SetContactPreferencesRequest(
                contact_preferences=notify_pb2.ContactPreferences(
                    name=f"patients/{ins}/contactPreferences",
                    email=email,
                    choices=[
                        notify_pb2.ChannelChoice(
                            kind=notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED,
                            channels=[notify_pb2.CHANNEL_EMAIL],
                        )
                    ],
                ),
                request_id=rid(),
            ),
            metadata=md,
            timeout=CALL_TIMEOUT_S,
        )
        await self.patient_consent.GrantAccess(
            consent_pb2.GrantAccessRequest(
                parent=dossier.name,
                professional_rpps=pki.DEMO_CARDS["doctor"].rpps,
                request_id=rid(),
            ),
            metadata=md,
            timeout=CALL_TIMEOUT_S,
        )
        return Patient(ins, dossier.name, email)

    # -- the calls of the load ------------------------------------------------------

    async def attempt(self, upload: Upload) -> grpc.StatusCode:
        try:
            created = await self.doctor.CreateDocument(upload.request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            upload.codes.append(err.code())
            upload.refused_at[err.code()] = asyncio.get_running_loop().time()
            if err.code() not in ALLOWED_DURING_FAULT:
                upload.unexpected.append(f"{err.code().name}: {err.details()}")
            return err.code()
        upload.codes.append(S.OK)
        upload.ok_at = asyncio.get_running_loop().time()
        if upload.name and upload.name != created.name:
            raise AssertionError(f"request {upload.request.request_id} made two documents")
        upload.name = created.name
        return S.OK

    async def read(self, upload: Upload, ledger: Ledger) -> None:
        """Read back an acknowledged document: the right content, or UNAVAILABLE."""
        try:
            got = await self.doctor.GetDocument(
                R.GetDocumentRequest(name=upload.name), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            ledger.reads[err.code()] += 1
            await asyncio.sleep(0.1)  # a client backs off before trying again
            return
        ledger.reads[S.OK] += 1
        if hashlib.sha256(got.content).hexdigest() != upload.content_sha:
            ledger.wrong_reads.append(upload.name)

    def new_upload(self, patient: Patient, ledger: Ledger) -> Upload:
        n = len(ledger.uploads)
        content = f"Compte rendu {n}: {uuid.uuid4()}".encode()
        request = R.CreateDocumentRequest(
            parent=patient.dossier, document=doc(content=content), request_id=rid()
        )
        upload = Upload(patient, request)
        ledger.uploads[request.request_id] = upload
        return upload


async def drive(
    platform: Platform,
    patients: list[Patient],
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    writers: int = 6,
    readers: int = 2,
    max_uploads: int = 600,
) -> None:
    """Uploads and read-backs until `stop` (or `max_uploads`): the load a fault lands in."""

    async def writer(index: int) -> None:
        turn = index
        while not stop.is_set() and len(ledger.uploads) < max_uploads:
            patient = patients[turn % len(patients)]
            turn += 1
            upload = platform.new_upload(patient, ledger)
            # As a client must: retry UNAVAILABLE with the same request id, after a pause.
            while not stop.is_set():
                code = await platform.attempt(upload)
                if code != S.UNAVAILABLE:
                    break
                await asyncio.sleep(0.1)
            if upload.name:
                ledger.progress.set()
            if len(ledger.acknowledged()) >= WARM_UP:
                ledger.warm.set()

    async def reader(index: int) -> None:
        turn = index
        while not stop.is_set():
            done = ledger.acknowledged()
            if not done:
                await asyncio.sleep(0.05)
                continue
            await platform.read(done[turn % len(done)], ledger)
            turn += 7

    await asyncio.gather(*(writer(i) for i in range(writers)), *(reader(i) for i in range(readers)))


@contextlib.asynccontextmanager
async def under_load(platform: Platform, patients: list[Patient], ledger: Ledger) -> Any:
    """Run `drive` in the background for the body of the `async with`, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(drive(platform, patients, ledger, stop))
    # Let the load reach a steady state first, so the fault lands on calls in flight.
    await asyncio.wait(
        [task, asyncio.create_task(ledger.warm.wait())],
        timeout=30,
        return_when=asyncio.FIRST_COMPLETED,
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def settle(platform: Platform, ledger: Ledger, within_s: float = RECOVERY_S) -> None:
    """After recovery: retry every request its client saw fail, with the same request id."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    for upload in ledger.uploads.values():
        while not upload.name:
            code = await platform.attempt(upload)
            assert code in ALLOWED_DURING_FAULT, (upload.request.request_id, upload.codes)
            assert loop.time() < deadline, f"still {code.name} after {within_s}s"
            if code != S.OK:
                await asyncio.sleep(0.1)


async def check_nothing_lost_or_doubled(platform: Platform, ledger: Ledger) -> None:
    """Every request id is one readable document with its content; records hold no others."""
    names = [u.name for u in ledger.uploads.values()]
    assert all(names), "a request was never done"
    assert len(set(names)) == len(names), "two requests share a document"
    gate = asyncio.Semaphore(8)

    async def read_back(upload: Upload) -> None:
        async with gate:
            got = await eventually(
                lambda: platform.doctor.GetDocument(
                    R.GetDocumentRequest(name=upload.name), timeout=CALL_TIMEOUT_S
                ),
                retry_on=(S.UNAVAILABLE,),
                within_s=RECOVERY_S,
            )
        assert hashlib.sha256(got.content).hexdigest() == upload.content_sha, upload.name

    await asyncio.gather(*(read_back(u) for u in ledger.uploads.values()))
    per_dossier = Counter(u.patient.dossier for u in ledger.uploads.values())
    for dossier, expected in per_dossier.items():
        listed = await platform.doctor.ListDocuments(
            R.ListDocumentsRequest(parent=dossier, page_size=1), timeout=CALL_TIMEOUT_S
        )
        assert listed.total_size == expected, (dossier, listed.total_size, expected)


@dataclass
class Mailbox:
    """The dev mail sink's .eml files: document announcements per recipient."""

    directory: Path

    def announcements(self) -> dict[str, list[str]]:
        """Recipient -> Message-IDs of every document-added e-mail received (raw, in order)."""
        found: dict[str, list[str]] = {}
        parser = BytesParser(policy=policy.default)
        for path in sorted(self.directory.glob("*.eml")):
            message = parser.parsebytes(path.read_bytes())
            if str(message["Subject"]) != DOCUMENT_ADDED_SUBJECT:
                continue
            found.setdefault(str(message["To"]), []).append(str(message["Message-ID"]))
        return found

    async def wait_distinct(self, expected: dict[str, int], within_s: float = RECOVERY_S) -> None:
        """Until every recipient has its expected number of distinct announcements."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            got = {to: len(set(ids)) for to, ids in self.announcements().items()}
            if all(got.get(to, 0) >= n for to, n in expected.items()):
                return
            if loop.time() > deadline:
                raise AssertionError(f"announcements {got}, expected {expected}")
            await asyncio.sleep(0.2)


async def unsent_notifications(stack: LiveStack) -> int:
    """notify's rows still to send (pending, or claimed by a sender: a killed notify's
    claims come back after their lease and are sent again)."""
    n = notify_models.notifications
    rows = await sql.fetch(
        stack.database_url("notify"),
        select(func.count())
        .select_from(n)
        .where(n.c.status.in_((notify_models.STATUS_PENDING, notify_models.STATUS_SENDING))),
    )
    return int(rows[0][0])


def expected_announcements(ledger: Ledger) -> dict[str, int]:
    return dict(Counter(u.patient.email for u in ledger.uploads.values()))


# -- nats-server: killed and restarted on the same port and store ----------------------


def kill_nats(stack: LiveStack) -> None:
    proc = stack.dev.nats.proc
    assert proc is not None, "nats-server is not running"
    proc.kill()
    proc.wait(10)
    stack.dev.nats.proc = None


def start_nats(stack: LiveStack) -> None:
    """Same port, same JetStream store: what a restarted pod with its volume gets."""
    stack.dev.nats.start()
    wait_for_port(stack.dev.nats.port)
