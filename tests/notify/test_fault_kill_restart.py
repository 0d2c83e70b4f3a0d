"""Fault test: 1,000 documents while notify is SIGKILLed twice and SMTP is down for 5 s.

notify runs as a real process (`python -m services.notify`) against its own
nats-server and SMTP sink. Expected: every document announced, none twice.
The SIGKILLs land while messages are being handed to SMTP, so a message
accepted by the sink just before a kill, and not yet marked sent, is sent
again with the same Message-ID (the documented at-least-once window). The
sink counts distinct Message-IDs, as a de-duplicating relay would; the raw
count is checked to stay within that window (in-flight sends per kill).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from dmp.notify.v1 import notify_pb2
from kit import migrations
from kit import nats as kit_nats
from kit.db import create_engine, session_factory
from kit.testing.databases import DatabaseFactory
from kit.testing.nats_server import NatsServer
from services.notify import preferences
from tests.fixtures.notify import SmtpSink
from tests.notify.eventkit import document, dossier_created, new_dossier, new_ins, publish

pytestmark = pytest.mark.slow

DOCUMENTS = 1000
CONCURRENCY = 16
ROOT = Path(__file__).resolve().parents[2]


def start_notify(env: dict[str, str], port_file: Path, log: Path) -> subprocess.Popen[bytes]:
    port_file.unlink(missing_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.notify"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "notify did not start"
        time.sleep(0.05)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


async def test_kill_twice_and_smtp_down_exactly_once(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    nats_server = NatsServer(tmp_path / "nats").start()
    sink = SmtpSink().start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = await databases.create("notify_fault")
        await migrations.upgrade("notify", url)
        engine = create_engine(url)
        ins, dossier, email = new_ins(), new_dossier(), "fault@exemple.fr"
        await preferences.save(
            session_factory(engine),
            ins,
            preferences.Preferences(
                email=email,
                mobile_phone="",
                choices={notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE: []},
            ),
        )
        await engine.dispose()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await kit_nats.ensure_stream(js, kit_nats.STREAMS["records"])
        port_file = tmp_path / "notify.port"
        log = tmp_path / "notify.log"
        env = {
            **os.environ,
            "DMP_DATABASE_URL": url,
            "DMP_NATS_URL": nats_server.url,
            "DMP_SMTP_HOST": sink.host,
            "DMP_SMTP_PORT": str(sink.port),
            "DMP_SMTP_TIMEOUT_S": "2",
            "DMP_GRPC_PORT": "0",
            "DMP_PORT_FILE": str(port_file),
            "DMP_SMS_SINK_PATH": str(tmp_path / "sms.ndjson"),
            "DMP_NOTIFICATION_ATTEMPTS": "30",
            "DMP_NOTIFICATION_BACKOFF_BASE_S": "0.2",
            "DMP_NOTIFICATION_BACKOFF_MAX_S": "1.0",
            "DMP_DISPATCH_CONCURRENCY": str(CONCURRENCY),
            "DMP_DISPATCH_POLL_S": "0.1",
            "DMP_SENDING_LEASE_S": "3",
            "DMP_CONSUMER_ACK_WAIT_S": "3",
            "DMP_CONSUMER_BACKOFF_S": "[0.1, 0.2, 0.5]",
            "DMP_LOG_LEVEL": "WARNING",
            "DMP_LOG_JSON": "false",
        }

        def unique() -> int:
            return len(set(sink.message_ids()))

        procs.append(start_notify(env, port_file, log))
        await publish(js, "dmp.records.dossier.created", dossier_created(dossier, ins))

        async def publish_all() -> None:
            for _ in range(DOCUMENTS // 100):
                await asyncio.gather(
                    *(
                        publish(js, "dmp.records.document.added", document(dossier))
                        for _ in range(100)
                    )
                )

        publishing = asyncio.create_task(publish_all())
        # Kill 1: in the middle of the stream.
        await wait_for(lambda: unique() >= 250, 30, "250 e-mails")
        kill(procs[-1])
        procs.append(start_notify(env, port_file, log))
        await publishing
        # SMTP down for 5 s, and kill 2 while it is down (rows waiting for a retry).
        await wait_for(lambda: unique() >= 550, 30, "550 e-mails")
        sink.stop()
        down = time.monotonic()
        await asyncio.sleep(1.0)
        kill(procs[-1])
        procs.append(start_notify(env, port_file, log))
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - down)))
        sink.start()
        await wait_for(lambda: unique() >= DOCUMENTS, 45, f"{DOCUMENTS} e-mails")
        await asyncio.sleep(1.0)  # anything extra would show up now
        raw = len(sink.messages)
        print(f"fault test: {unique()} distinct e-mails, {raw} received")
        assert unique() == DOCUMENTS
        assert all(m.rcpt_tos == [email] for m in sink.messages)
        # Resends only from the two kills' in-flight windows.
        assert raw - DOCUMENTS <= 2 * CONCURRENCY
        await nc.drain()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        sink.stop()
        nats_server.stop()
