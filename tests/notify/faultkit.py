"""A notify process under test: real nats-server, SMTP sink, database, signals.

notify runs as `python -m services.notify` (so SIGTERM goes through the real
`run_app` shutdown and SIGKILL really loses the process), logs JSON lines to a
file the tests read, and announces the documents of one dossier to one
e-mail address.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import func, select

from dmp.notify.v1 import notify_pb2
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import NatsServer, free_port
from kit import nats as kit_nats
from kit.db import create_engine, session_factory
from services.notify import preferences
from services.notify.models import notifications
from tests.notify.eventkit import document, dossier_created, new_dossier, new_id, new_ins, publish

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "fault@exemple.fr"


@dataclass
class Rig:
    tmp: Path
    nats_server: NatsServer
    sink: MailSink
    url: str
    env: dict[str, str]
    nc: Client
    js: JetStreamContext
    dossier: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    published: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.tmp / "notify.log"

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """Start notify; return once it serves gRPC (its consumers follow at once)."""
        port_file = self.tmp / "notify.port"
        port_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.notify"],
                env={**self.env, **env, "DMP_PORT_FILE": str(port_file)},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "notify did not start"
            time.sleep(0.05)
        return proc

    async def terminate(
        self,
        proc: subprocess.Popen[bytes],
        within_s: float,
        after_signal: Callable[[], None] | None = None,
    ) -> float:
        """SIGTERM; the process must exit by itself, with status 0, within `within_s`.

        `after_signal` runs right after the signal is sent (e.g. the relay going down).
        """
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if after_signal is not None:
            after_signal()
        try:
            code = await asyncio.to_thread(proc.wait, within_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"notify still running {within_s} s after SIGTERM") from None
        assert code == 0, self.log_path.read_text()[-3000:]
        return time.monotonic() - sent

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def publish_documents(self, count: int, burst: int = 100) -> None:
        for start in range(0, count, burst):
            ids = [new_id() for _ in range(min(burst, count - start))]
            self.published.extend(ids)
            await asyncio.gather(
                *(
                    publish(
                        self.js,
                        "dmp.records.document.added",
                        document(self.dossier, event_id=event_id),
                    )
                    for event_id in ids
                )
            )

    def raw(self) -> int:
        return len(self.sink.messages)

    def distinct(self) -> int:
        return len(set(self.sink.message_ids()))

    def duplicates(self) -> dict[str, int]:
        """Message-ID → copies received, for those received more than once."""
        return {k: v for k, v in Counter(self.sink.message_ids()).items() if v > 1}

    async def rows(self) -> dict[str, str]:
        """notification_id → event id of every notification row."""
        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as session:
                result = await session.execute(
                    select(notifications.c.notification_id, notifications.c.event_id)
                )
                return {r.notification_id: r.event_id for r in result}
        finally:
            await engine.dispose()

    async def statuses(self) -> dict[str, int]:
        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as session:
                result = await session.execute(
                    select(notifications.c.status, func.count()).group_by(notifications.c.status)
                )
                return {str(status): int(count) for status, count in result.all()}
        finally:
            await engine.dispose()

    async def announced_events(self) -> set[str]:
        """Event ids of the documents whose e-mail reached the sink."""
        by_id = await self.rows()
        events = set()
        for message_id in set(self.sink.message_ids()):
            notification_id = message_id.strip("<>").split("@", 1)[0]
            events.add(by_id[notification_id])
        return events

    def log_events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if name not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name:
                found.append(entry)
        return found


async def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.005)


async def settle(rig: Rig, expected: int, timeout_s: float) -> None:
    """Wait until every notification is recorded sent and the sink has them all.

    No second copy can come after that: a resend is of a row still claimed ("sending")
    when its lease expires, and a row is recorded sent only once the relay accepted its
    e-mail, so with every row sent every copy is already in the sink.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = await rig.statuses()
        if statuses == {"sent": expected} and rig.distinct() >= expected:
            return
        assert time.monotonic() < deadline, f"timed out: {statuses}, {rig.distinct()} e-mails"
        await asyncio.sleep(0.1)


async def retried_while_down(rig: Rig, before: int, at_least: int, timeout_s: float) -> None:
    """Until the process logged `at_least` more failed sends put back for a retry (the relay
    is down and sends go on with backoff) than the `before` of earlier processes."""
    deadline = time.monotonic() + timeout_s
    while len(rig.log_events("notification_retry")) < before + at_least:
        assert time.monotonic() < deadline, "timed out: no retries while the relay is down"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def fault_rig(
    databases: DatabaseFactory,
    tmp: Path,
    *,
    accept_delay_s: float = 0.0,
    **env: str,
) -> AsyncIterator[Rig]:
    """Everything a fault test needs, torn down whatever happens (processes included)."""
    nats_server = NatsServer(tmp / "nats").start()
    sink = MailSink(free_port(), accept_delay_s=accept_delay_s).start()
    rig: Rig | None = None
    try:
        url = await databases.migrated("notify", "notify_fault")
        engine = create_engine(url)
        ins, dossier = new_ins(), new_dossier()
        await preferences.save(
            session_factory(engine),
            ins,
            preferences.Preferences(
                email=EMAIL,
                mobile_phone="",
                choices={notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE: []},
            ),
        )
        await engine.dispose()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await kit_nats.ensure_stream(js, kit_nats.STREAMS["records"])
        base_env = {
            **os.environ,
            "DMP_DATABASE_URL": url,
            "DMP_NATS_URL": nats_server.url,
            "DMP_SMTP_HOST": sink.host,
            "DMP_SMTP_PORT": str(sink.port),
            "DMP_SMTP_TIMEOUT_S": "2",
            "DMP_GRPC_PORT": "0",
            "DMP_METRICS_PORT": "0",
            "DMP_SMS_SINK_PATH": str(tmp / "sms.ndjson"),
            "DMP_NOTIFICATION_ATTEMPTS": "30",
            "DMP_NOTIFICATION_BACKOFF_BASE_S": "0.2",
            "DMP_NOTIFICATION_BACKOFF_MAX_S": "1.0",
            "DMP_DISPATCH_POLL_S": "0.1",
            "DMP_SENDING_LEASE_S": "3",
            "DMP_CONSUMER_ACK_WAIT_S": "3",
            "DMP_CONSUMER_BACKOFF_S": "[0.1, 0.2, 0.5]",
            "DMP_LOG_LEVEL": "INFO",
            "DMP_LOG_JSON": "true",
            **env,
        }
        rig = Rig(tmp, nats_server, sink, url, base_env, nc, js, dossier)
        await publish(js, "dmp.records.dossier.created", dossier_created(dossier, ins))
        yield rig
        await nc.drain()
    finally:
        if rig is not None:
            for proc in rig.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        sink.stop()
        nats_server.stop()
