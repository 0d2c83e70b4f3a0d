"""The platform in-process for the tracing and metrics tests, with an in-memory span exporter.

Spans of every in-process server land in one `InMemorySpanExporter`, so a test
can follow one call from the gateway (real TLS, a real card) through records,
its outbox relay, NATS, notify's consumer and dispatcher, to the e-mail
accepted by an aiosmtpd sink. The assembly (package scope: one for the tracing and metrics
modules, whose checks are deltas and their own traces) has its own nats-server: no other
test area's event backlog sits in front of its events. Records and the gateway
serve Prometheus endpoints on free ports.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from dmp.identity.v1 import identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev import pki
from dmp_dev.launcher.cards import registration_request
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.testing import principals
from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.nats_server import NatsServer, free_port
from gateway.app import RunningGateway, start_gateway
from gateway.settings import GatewaySettings
from kit import tracing
from kit.server import RunningServer, start_app
from kit.tokens import AccessTokenIssuer, load_private_key
from services.consent.app import ConsentApp
from services.consent.settings import ConsentSettings
from services.identity.app import IdentityApp
from services.notify.app import NotifyApp
from services.notify.settings import NotifySettings
from services.records.app import RecordsApp
from services.records.settings import RecordsSettings
from tests.fixtures.notify import notify_test_settings
from tests.identity.helpers import identity_settings

SET_PREFERENCES = "/dmp.notify.v1.NotifyService/SetContactPreferences"


@pytest.fixture(scope="session")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished in this process from now on (cleared by the tests that read it)."""
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.add_span_processor(processor)
    yield exporter
    processor.shutdown()


@dataclass
class Assembly:
    gateway: RunningGateway
    identity: RunningServer
    consent: RunningServer
    records: RunningServer
    notify: RunningServer
    smtp: MailSink
    pki_dir: Path
    nats_url: str
    key_dir: Path
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def card_channel(self, stem: str) -> grpc.aio.Channel:
        cards = self.pki_dir / "cards"
        creds = grpc.ssl_channel_credentials(
            (self.pki_dir / "ca.crt").read_bytes(),
            private_key=(cards / f"{stem}.key").read_bytes(),
            certificate_chain=(cards / f"{stem}.crt").read_bytes(),
        )
        channel = grpc.aio.secure_channel(f"localhost:{self.gateway.port}", creds)
        self.channels.append(channel)
        return channel

    def patient_channel(self) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials((self.pki_dir / "ca.crt").read_bytes())
        channel = grpc.aio.secure_channel(f"localhost:{self.gateway.patient_port}", creds)
        self.channels.append(channel)
        return channel

    def patient_token(self, ins: str) -> tuple[tuple[str, str], ...]:
        """Bearer metadata of a token signed with identity's key, as a login would issue."""
        issuer = AccessTokenIssuer(load_private_key(self.key_dir / "token_signing_key.pem"))
        token = issuer.issue(account=f"acct-{ins}", ins=ins, session_id=uuid.uuid4().hex).token
        return (("authorization", f"Bearer {token}"),)

    async def wait_projected(self, dossier: str, within_s: float = 15.0) -> None:
        """Until consent has projected the record (the gateway's Authorize needs it)."""
        app = self.consent.app
        assert isinstance(app, ConsentApp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            app.cache.invalidate(dossier)
            record = await app.cache.record(dossier)
            if record is not None and record.state == records_pb2.DOSSIER_STATE_ACTIVE:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"consent never projected {dossier}")

    async def set_email(self, ins: str, email: str) -> None:
        """The patient's contact: document notifications by e-mail (direct, signed call)."""
        prefs = notify_pb2.ContactPreferences(
            name=f"patients/{ins}/contactPreferences",
            email=email,
            choices=[
                notify_pb2.ChannelChoice(
                    kind=notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED,
                    channels=[notify_pb2.CHANNEL_EMAIL],
                )
            ],
        )
        async with grpc.aio.insecure_channel(self.notify.target) as channel:
            await notify_pb2_grpc.NotifyServiceStub(channel).SetContactPreferences(
                notify_pb2.SetContactPreferencesRequest(
                    contact_preferences=prefs, request_id=str(uuid.uuid4())
                ),
                metadata=principals.metadata(principals.patient(ins), SET_PREFERENCES),
                timeout=10,
            )


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics and index every sample by (name, sorted labels)."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(fetch)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def span_tree(finished: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in finished if s.context is not None and s.context.trace_id == trace_id]


async def _register_card(identity: RunningServer, pki_dir: Path, stem: str) -> None:
    """As the launcher does: the gateway refuses every card identity does not list."""
    cert = x509.load_pem_x509_certificate((pki_dir / "cards" / f"{stem}.crt").read_bytes())
    method, request = registration_request(cert, pki.card_fields(cert))
    path = f"/dmp.identity.v1.IdentityService/{method}"
    async with grpc.aio.insecure_channel(identity.target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        await getattr(stub, method)(
            request, metadata=principals.metadata(principals.internal("pki"), path), timeout=10
        )


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def assembly(
    databases: DatabaseFactory,
    tmp_path_factory: pytest.TempPathFactory,
    spans: InMemorySpanExporter,
) -> AsyncIterator[Assembly]:
    base = tmp_path_factory.mktemp("observability")
    nats = NatsServer(base / "nats").start()
    smtp = MailSink(free_port()).start()
    started: list[RunningServer] = []
    try:
        notify_base = notify_test_settings(
            await databases.migrated("notify", "obs-notify"), smtp, base / "sms.ndjson"
        ).model_dump()
        notify_base.update(
            nats_url=nats.url,
            events_enabled=True,
            consumer_prefix=f"obs{uuid.uuid4().hex[:8]}",
            dispatch_poll_s=0.05,
        )
        notify = await start_app(NotifyApp(NotifySettings(**notify_base)))
        started.append(notify)
        key_dir = base / "keys"
        identity = await start_app(
            IdentityApp(
                identity_settings(
                    await databases.migrated("identity", "obs-identity"),
                    nats.url,
                    notify.target,
                    key_dir,
                )
            )
        )
        started.append(identity)
        consent = await start_app(
            ConsentApp(
                ConsentSettings(
                    database_url=await databases.migrated("consent", "obs-consent"),
                    nats_url=nats.url,
                    identity_target=identity.target,
                    log_json=False,
                )
            )
        )
        started.append(consent)
        records = await start_app(
            RecordsApp(
                RecordsSettings(
                    database_url=await databases.migrated("records", "obs-records"),
                    nats_url=nats.url,
                    identity_target=identity.target,
                    metrics_port=free_port(),
                    log_json=False,
                )
            )
        )
        started.append(records)
        # notify subscribes to records' and consent's streams: they exist from now on.
        assert isinstance(notify.app, NotifyApp)
        await asyncio.wait_for(notify.app.wait_events_ready(), 30)
        pki_dir = base / "pki"
        pki.ensure_dev_pki(pki_dir)
        for stem in ("doctor", "desk"):
            await _register_card(identity, pki_dir, stem)
        gateway = await start_gateway(
            GatewaySettings(
                grpc_port=0,
                patient_port=0,
                gateway_http_port=0,
                tls_cert_file=str(pki_dir / "gateway.crt"),
                tls_key_file=str(pki_dir / "gateway.key"),
                client_ca_file=str(pki_dir / "ca.crt"),
                token_public_key_file=str(key_dir / "token_signing_key.pem.pub"),
                identity_target=identity.target,
                records_target=records.target,
                consent_target=consent.target,
                notify_target=notify.target,
                history_feed_target="127.0.0.1:1",
                nats_url=nats.url,
                metrics_port=free_port(),
                log_json=False,
            )
        )
        out = Assembly(
            gateway, identity, consent, records, notify, smtp, pki_dir, nats.url, key_dir
        )
        yield out
        for channel in out.channels:
            await channel.close()
        await gateway.stop(0)
    finally:
        for server in reversed(started):
            await server.stop(0.5)
        smtp.stop()
        nats.stop()
