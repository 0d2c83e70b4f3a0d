"""Event notification fixtures: notify consuming a real nats-server, mail to `smtp_sink`.

`notify_events` is one NotifyApp (session scope) on its own database and its own
nats-server: on the session's shared server, the backlog of records and consent
events left by other test modules (for dossiers notify never heard of) is retried
with backoff by the same durable consumers and can delay a test's event past its
wait. It runs with
short retry delays (6 send attempts from 0.1 s doubling up to 1 s; events
redelivered after 0.1 to 0.5 s, dead-lettered after 6 deliveries).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from dmp.notify.v1 import notify_pb2_grpc
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import NatsServer
from kit import nats as kit_nats
from kit.server import RunningServer, start_app
from services.notify.app import NotifyApp
from services.notify.settings import NotifySettings
from tests.fixtures.notify import notify_test_settings


def events_settings(
    database_url: str, nats_url: str, smtp: MailSink, sms_path: Path, **overrides: object
) -> NotifySettings:
    base = notify_test_settings(database_url, smtp, sms_path).model_dump()
    base.update(
        nats_url=nats_url,
        events_enabled=True,
        consumer_prefix=f"t{uuid.uuid4().hex[:10]}",
        consumer_max_deliver=6,
        consumer_backoff_s=[0.1, 0.2, 0.3, 0.5],
        notification_attempts=6,
        notification_backoff_base_s=0.1,
        notification_backoff_max_s=1.0,
        dispatch_poll_s=0.05,
        sending_lease_s=5.0,
    )
    base.update(overrides)
    return NotifySettings(**base)


@dataclass
class EventsEnv:
    server: RunningServer
    js: JetStreamContext
    nc: Client
    stub: notify_pb2_grpc.NotifyServiceAsyncStub
    smtp: MailSink
    sms_path: Path

    @property
    def app(self) -> NotifyApp:
        app = self.server.app
        assert isinstance(app, NotifyApp)
        return app


@pytest.fixture(scope="session")
def notify_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server of the notify event tests alone."""
    server = NatsServer(tmp_path_factory.mktemp("notify-nats")).start()
    yield server.url
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notify_events(
    databases: DatabaseFactory, notify_nats_url: str, smtp_sink: MailSink, sms_sink_path: Path
) -> AsyncIterator[EventsEnv]:
    nats_url = notify_nats_url
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for owner in ("records", "consent", "identity", "notify"):
        await kit_nats.ensure_stream(js, kit_nats.STREAMS[owner])
    url = await databases.migrated("notify", "notify_events")
    app = NotifyApp(events_settings(url, nats_url, smtp_sink, sms_sink_path))
    running = await start_app(app)
    await app.wait_events_ready()
    async with grpc.aio.insecure_channel(running.target) as channel:
        yield EventsEnv(
            running,
            js,
            nc,
            notify_pb2_grpc.NotifyServiceStub(channel),  # type: ignore[arg-type]
            smtp_sink,
            sms_sink_path,
        )
    await running.stop(0.5)
    await nc.drain()
