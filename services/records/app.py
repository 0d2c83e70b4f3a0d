"""The records service process: settings, database, outbox relay, servicer."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.records.v1 import records_pb2, records_pb2_grpc
from kit.db import single_statement_sessions
from kit.pagination import PageTokens
from kit.server import ServiceApp
from services.records.models import outbox
from services.records.servicer import RecordsServicer
from services.records.settings import RecordsSettings
from services.records.transactions import Transactions


class RecordsApp(ServiceApp):
    """Records: lifecycle, documents, health profile; events through the outbox."""

    name = "records"
    outbox = outbox

    def __init__(self, settings: RecordsSettings) -> None:
        settings.kek_bytes()  # refuse to start with a malformed or missing KEK
        super().__init__(settings)
        self.records_settings = settings

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    def _single_statement_sessions(self) -> async_sessionmaker[AsyncSession] | None:
        return None if self.engine is None else single_statement_sessions(self.engine)

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        servicer = RecordsServicer(
            Transactions(self.db, self.wake_relay, self._single_statement_sessions()),
            self.records_settings,
            PageTokens.for_service(self.settings, self.name),
        )
        records_pb2_grpc.add_RecordsServiceServicer_to_server(servicer, server)
        return [records_pb2.DESCRIPTOR.services_by_name["RecordsService"].full_name]
