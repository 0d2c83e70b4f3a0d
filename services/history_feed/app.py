"""The history_feed service process: claim line writer, dossier.created consumer, servicer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from dmp.history.v1 import history_pb2, history_pb2_grpc
from kit import nats as kit_nats
from kit.consumer import DurableConsumer
from kit.directory import DirectoryClient
from kit.pagination import PageTokens
from kit.server import ServiceApp
from services.history_feed import consumed, display, materialize
from services.history_feed.ingest import today_in_france
from services.history_feed.servicer import HistoryFeedServicer
from services.history_feed.settings import HistoryFeedSettings
from services.history_feed.writers import ClaimWriter, writer_for


class HistoryFeedApp(ServiceApp):
    """No outbox: history_feed publishes no event; it consumes dossier.created."""

    name = "history_feed"

    def __init__(self, settings: HistoryFeedSettings) -> None:
        super().__init__(settings)
        self.history_settings = settings
        self._writer: ClaimWriter | None = None
        self._consumer: DurableConsumer | None = None
        keys = settings.principal_key_bytes()
        self.directory = DirectoryClient(
            "history_feed", settings.identity_target, settings.principal_key_id, keys
        )
        self.book = display.VaccinationBook(
            settings.records_target, settings.principal_key_id, keys
        )

    def needs_nats(self) -> bool:
        return self.history_settings.history_consume_dossier_events

    def server_options(self) -> Sequence[tuple[str, Any]]:
        return [
            ("grpc.http2.lookahead_bytes", self.history_settings.history_stream_lookahead_bytes)
        ]

    @property
    def writer(self) -> ClaimWriter:
        if self._writer is None:
            raise RuntimeError("history_feed: writer not started")
        return self._writer

    async def start(self) -> None:
        await super().start()
        self._writer = writer_for(self.settings.database_url, self.db)
        await self._writer.start()
        cfg = self.history_settings
        if self.js is not None and cfg.history_consume_dossier_events:
            # Records owns the stream; made here too so the feed can start first.
            await kit_nats.ensure_stream(
                self.js, kit_nats.STREAMS["records"], replicas=self.settings.nats_stream_replicas
            )
            self._consumer = DurableConsumer(
                self.js,
                consumed.spec(cfg.history_consumer_durable),
                consumed.backfill_for(self._backfill),
            )
            self._consumer.start()
            await self._consumer.wait_subscribed()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._writer is not None:
            await self._writer.close()
        await self.directory.close()
        await self.book.close()
        await super().stop()

    async def _backfill(
        self, request: history_pb2.BackfillDossierRequest, scope: str
    ) -> history_pb2.BackfillDossierResponse:
        return await materialize.backfill(
            self.db,
            request,
            scope=scope,
            today=today_in_france(),
            window_months=self.history_settings.history_window_months,
        )

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = HistoryFeedServicer(
            self.db,
            self.writer,
            self.history_settings,
            PageTokens.for_service(self.settings, self.name),
            directory=self.directory,
            book=self.book,
        )
        history_pb2_grpc.add_HistoryFeedServiceServicer_to_server(servicer, server)
        return [history_pb2.DESCRIPTOR.services_by_name["HistoryFeedService"].full_name]
