"""The consent service process: wires the matrix, caches, records projection and servicer.

The app builds a `Runtime` once the database is open and hands it to the
servicer; nothing below the app imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import grpc
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc, events_pb2
from dmp.records.v1 import events_pb2 as records_events
from kit.consumer import DurableConsumer
from kit.db import is_sqlite
from kit.directory import DirectoryClient
from kit.logs import get_logger
from kit.pagination import PageTokens
from kit.server import ServiceApp
from services.consent import creation, matrix, published
from services.consent.cache import SnapshotCache
from services.consent.log_writer import LogWriter
from services.consent.models import outbox
from services.consent.projection import RecordProjection, consumer_spec
from services.consent.runtime import Runtime
from services.consent.servicer import ConsentServicer
from services.consent.settings import ConsentSettings

log = get_logger(__name__)


class ConsentApp(ServiceApp):
    """Loads and validates the matrix before anything else: a bad matrix never serves."""

    name = "consent"
    outbox = outbox

    def __init__(self, settings: ConsentSettings) -> None:
        super().__init__(settings)
        self.consent_settings = settings
        self.matrix = matrix.load(settings.policy_path or None)
        self.directory = DirectoryClient(
            "consent",
            settings.identity_target,
            settings.principal_key_id,
            settings.principal_key_bytes(),
        )
        self._runtime: Runtime | None = None
        self.consumer: DurableConsumer | None = None
        self._changes: Subscription | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("consent: not started")
        return self._runtime

    @property
    def cache(self) -> SnapshotCache:
        return self.runtime.cache

    async def start(self) -> None:
        await super().start()
        size = self.consent_settings.record_cache_size
        self._runtime = Runtime(
            settings=self.consent_settings,
            matrix=self.matrix,
            sessions=self.db,
            cache=SnapshotCache(self.db, size),
            log_writer=LogWriter(
                self.db, size, single_writer=is_sqlite(self.settings.database_url)
            ),
            directory=self.directory,
            page_tokens=PageTokens.for_service(self.settings, self.name),
            wake_relay=self.wake_relay,
        )
        if self.js is not None and self.nc is not None:
            runtime = self.runtime

            async def on_created(event: records_events.DossierCreated) -> None:
                await creation.apply(runtime, event)

            projection = RecordProjection(
                self.db, self.cache.invalidate, self.wake_relay, on_created
            )
            self.consumer = DurableConsumer(
                self.js, consumer_spec(self.consent_settings.records_consumer), projection.handle
            )
            self.consumer.start()
            # Other replicas' rule changes: drop this replica's cached snapshot.
            self._changes = await self.nc.subscribe(published.CHANGED, cb=self._on_changed)
        log.info("policy_loaded", version=self.matrix.version, sha256=self.matrix.sha256)

    async def nats_disconnected(self) -> None:
        # Other replicas' dmp.consent.changed are missed until reconnected: read through.
        self.cache.invalidate("")

    async def nats_reconnected(self) -> None:
        self.cache.invalidate("")

    async def _on_changed(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeError):
            self.cache.invalidate(events_pb2.ConsentChanged.FromString(msg.data).dossier)

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self._changes is not None:
            with contextlib.suppress(Exception):
                await self._changes.unsubscribe()
        await self.directory.close()
        await super().stop()

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(self.runtime), server)
        return [consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name]
