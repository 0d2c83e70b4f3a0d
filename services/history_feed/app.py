"""The history_feed service process."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import grpc

from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.records.v1 import events_pb2
from kit.server import ServiceApp
from services.history_feed import materialize
from services.history_feed.consumer import DossierCreatedConsumer
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
        self._consumer: DossierCreatedConsumer | None = None

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
        if self.js is not None and self.history_settings.history_consume_dossier_events:
            self._consumer = DossierCreatedConsumer(
                self.js, self.history_settings.history_consumer_durable, self.on_dossier_created
            )
            await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._writer is not None:
            await self._writer.close()
        await super().stop()

    async def on_dossier_created(self, event: events_pb2.DossierCreated) -> None:
        await self.backfill(
            dossier=event.dossier,
            patient_ins=event.patient_ins,
            since_date=None,
            request_id=event.header.event_id or f"created:{event.dossier}"[:64],
        )

    async def backfill(
        self, *, dossier: str, patient_ins: str, since_date: date | None, request_id: str
    ) -> history_pb2.BackfillDossierResponse:
        return await materialize.backfill(
            self.db,
            dossier=dossier,
            patient_ins=patient_ins,
            since_date=since_date,
            request_id=request_id,
            today=today_in_france(),
            window_months=self.history_settings.history_window_months,
        )

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        history_pb2_grpc.add_HistoryFeedServiceServicer_to_server(HistoryFeedServicer(self), server)
        return [history_pb2.DESCRIPTOR.services_by_name["HistoryFeedService"].full_name]
