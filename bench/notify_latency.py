"""Document added → e-mail received: latency percentiles and sustained e-mails per second.

Everything on loopback in one run: a throw-away nats-server, a fresh database
(`--database sqlite|postgresql`, default sqlite), an aiosmtpd sink in a
thread stamping each message on arrival, and notify as its own process
(`python -m services.notify`) with its default settings (16 sends in flight,
one SMTP connection per message).

1. Latency: `--count` `dmp.records.document.added` events published at a
   steady `--rate` (default 50/s, below the sustained capacity measured in 2:
   above it, latency is only queueing and grows with the count), published
   to JetStream with `Nats-Msg-Id` as the records outbox relay does;
   latency = sink arrival − publish start, matched through the notification
   rows (event id → Message-ID). p50/p99 over all of them.
2. Throughput: `--count` more events published at once; `emails_per_s` =
   count / (last arrival − first publish).
3. Baseline: the same number of e-mails sent straight to the same sink with
   aiosmtplib, same concurrency; `ratio` = notify / direct.

Bounded: `--count` per phase (default 1000), `--timeout` per phase.
Writes bench/results/notify_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosmtplib
import nats
from aiosmtpd.controller import Controller
from sqlalchemy import select

from dmp.records.v1 import events_pb2, records_pb2
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import NatsServer, free_port
from kit import migrations
from kit import nats as kit_nats
from kit.db import create_engine, session_factory
from kit.logs import configure_logging
from services.notify import preferences
from services.notify.models import notifications
from services.notify.settings import NotifySettings

ROOT = Path(__file__).resolve().parents[1]


class Sink:
    """aiosmtpd handler recording (Message-ID, arrival perf_counter)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        now = time.perf_counter()
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        with self._lock:
            self.count += 1
            self.arrivals.setdefault(str(message["Message-ID"]), now)
        return "250 OK"


def start_notify(settings: NotifySettings, tmp: Path) -> subprocess.Popen[bytes]:
    """notify as in production: its own process (own GIL, apart from the sink and publisher)."""
    port_file = tmp / "notify.port"
    env = {
        **os.environ,
        "DMP_DATABASE_URL": settings.database_url,
        "DMP_NATS_URL": settings.nats_url,
        "DMP_SMTP_HOST": settings.smtp_host,
        "DMP_SMTP_PORT": str(settings.smtp_port),
        "DMP_GRPC_PORT": "0",
        "DMP_PORT_FILE": str(port_file),
        "DMP_SMS_SINK_PATH": str(tmp / "sms.ndjson"),
        "DMP_LOG_LEVEL": "WARNING",
    }
    log = (tmp / "notify.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.notify"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("notify did not start")
        time.sleep(0.05)
    return proc


def _header() -> events_pb2.EventHeader:
    header = events_pb2.EventHeader(event_id=uuid.uuid4().hex, actor="810000000001")
    header.occur_time.FromDatetime(datetime.now(UTC))
    return header


def document(dossier: str) -> events_pb2.DocumentChanged:
    return events_pb2.DocumentChanged(
        header=_header(),
        dossier=dossier,
        document=f"{dossier}/documents/{uuid.uuid4().hex}",
        class_code="11",
    )


async def wait_count(sink: Sink, target: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while sink.count < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sink.count}/{target} e-mails after {limit_s} s")
        await asyncio.sleep(0.005)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("bench", "WARNING", json_output=False)
    with tempfile.TemporaryDirectory(prefix="dmp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        nats_server = NatsServer(tmp / "nats").start()
        databases = DatabaseFactory(args.database, tmp)
        sink = Sink()
        controller = Controller(sink, hostname="127.0.0.1", port=free_port())
        controller.start()
        proc: subprocess.Popen[bytes] | None = None
        engine = None
        nc = None
        try:
            settings = NotifySettings(
                database_url=await databases.create("notify"),
                nats_url=nats_server.url,
                smtp_host="127.0.0.1",
                smtp_port=controller.port,
            )
            nc = await nats.connect(nats_server.url)
            js = nc.jetstream()
            # The publishers' streams (records and consent would create them).
            for owner in ("records", "consent", "identity"):
                await kit_nats.ensure_stream(js, kit_nats.STREAMS[owner])
            await migrations.upgrade("notify", settings.database_url)
            engine = create_engine(settings.database_url)
            sessions = session_factory(engine)
            proc = start_notify(settings, tmp)

            ins, dossier = str(uuid.uuid4().int)[:13], f"dossiers/{uuid.uuid4().hex}"
            await preferences.save(
                sessions, ins, preferences.Preferences("bench@exemple.fr", "", {})
            )
            created = events_pb2.DossierCreated(
                header=_header(),
                dossier=dossier,
                patient_ins=ins,
                state=records_pb2.DOSSIER_STATE_ACTIVE,
            )
            await js.publish(
                "dmp.records.dossier.created",
                created.SerializeToString(),
                headers={"Nats-Msg-Id": created.header.event_id},
            )
            await wait_count(sink, 1, args.timeout)

            # 1. Latency at a steady rate.
            published: dict[str, float] = {}
            interval = 1.0 / args.rate
            start = time.perf_counter()
            for i in range(args.count):
                due = start + i * interval
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                event = document(dossier)
                published[event.header.event_id] = time.perf_counter()
                await js.publish(
                    "dmp.records.document.added",
                    event.SerializeToString(),
                    headers={"Nats-Msg-Id": event.header.event_id},
                )
            await wait_count(sink, 1 + args.count, args.timeout)
            await asyncio.sleep(0.5)  # the last rows marked sent
            async with sessions() as session:
                rows = (
                    await session.execute(
                        select(
                            notifications.c.event_id,
                            notifications.c.notification_id,
                            notifications.c.occur_time,
                            notifications.c.create_time,
                            notifications.c.send_time,
                        )
                    )
                ).all()
            domain = settings.mail_from.rsplit("@", 1)[1]
            latencies = sorted(
                (sink.arrivals[f"<{r.notification_id}@{domain}>"] - published[r.event_id]) * 1000
                for r in rows
                if r.event_id in published
            )
            quantiles = statistics.quantiles(latencies, n=100)
            stage = [r for r in rows if r.event_id in published and r.send_time is not None]
            intake_ms = statistics.median(
                (r.create_time - r.occur_time).total_seconds() * 1000 for r in stage
            )
            send_ms = statistics.median(
                (r.send_time - r.create_time).total_seconds() * 1000 for r in stage
            )

            # 2. Sustained throughput: a burst.
            before = sink.count
            events = [document(dossier) for _ in range(args.count)]
            burst_start = time.perf_counter()
            for chunk in range(0, len(events), 100):
                await asyncio.gather(
                    *(
                        js.publish(
                            "dmp.records.document.added",
                            e.SerializeToString(),
                            headers={"Nats-Msg-Id": e.header.event_id},
                        )
                        for e in events[chunk : chunk + 100]
                    )
                )
            await wait_count(sink, before + args.count, args.timeout)
            burst_s = time.perf_counter() - burst_start
            emails_per_s = args.count / burst_s
            sent = sink.count - 1  # the creation e-mail aside

            # 3. Baseline: direct aiosmtplib sends, same concurrency.
            before = sink.count
            gate = asyncio.Semaphore(settings.dispatch_concurrency)

            async def direct(i: int) -> None:
                message = EmailMessage()
                message["From"] = settings.mail_from
                message["To"] = "bench@exemple.fr"
                message["Subject"] = "baseline"
                message["Message-ID"] = f"<baseline-{i}@{domain}>"
                message.set_content("Un nouveau document a été ajouté à votre DMP.")
                async with gate:
                    await aiosmtplib.send(
                        message, hostname="127.0.0.1", port=controller.port, timeout=10
                    )

            base_start = time.perf_counter()
            await asyncio.gather(*(direct(i) for i in range(args.count)))
            await wait_count(sink, before + args.count, args.timeout)
            baseline = args.count / (time.perf_counter() - base_start)
        finally:
            if nc is not None:
                await nc.drain()
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if engine is not None:
                await engine.dispose()
            controller.stop()
            await databases.drop_all()
            nats_server.stop()
    return {
        "backend": args.database,
        "rate_per_s": args.rate,
        "p50_ms": round(quantiles[49], 2),
        "p99_ms": round(quantiles[98], 2),
        "max_ms": round(latencies[-1], 2),
        "median_queue_to_row_ms": round(intake_ms, 2),
        "median_row_to_sent_ms": round(send_ms, 2),
        "emails_per_s": round(emails_per_s, 1),
        "sent": sent,
        "expected": 2 * args.count,
        "baseline_direct_smtp_emails_per_s": round(baseline, 1),
        "ratio_vs_direct_smtp": round(emails_per_s / baseline, 3),
        "dispatch_concurrency": 16,
        "count_per_phase": args.count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000, help="Documents per phase.")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="Documents/s of the latency phase."
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=120.0, help="Per phase, seconds.")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:36} {value}")
    out = ROOT / "bench" / "results" / "notify_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
