"""gRPC handlers of `dmp.history.v1.HistoryFeedService`: check the caller, delegate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.history.v1 import history_pb2, history_pb2_grpc
from kit import pagination
from kit.context import require_principal
from kit.directory import DirectoryClient
from kit.errors import permission_denied
from kit.principal import require_kind
from services.history_feed import display, materialize, reading
from services.history_feed.ingest import run_ingest, today_in_france
from services.history_feed.settings import HistoryFeedSettings
from services.history_feed.writers import ClaimWriter


def require_feeder(principal: principal_pb2.Principal) -> None:
    """Only the AMO's service certificate writes history (docs/ARCHITECTURE.md, Actors)."""
    require_kind(principal, principal_pb2.PRINCIPAL_KIND_SERVICE)
    if reading.AMO_FEEDER_ROLE not in principal.roles:
        raise permission_denied("AMO_FEEDER_ONLY", "Only the AMO feeder may send claim lines.")


class HistoryFeedServicer(history_pb2_grpc.HistoryFeedServiceServicer):
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        writer: ClaimWriter,
        settings: HistoryFeedSettings,
        page_tokens: pagination.PageTokens,
        *,
        directory: DirectoryClient,
        book: display.VaccinationBook,
    ) -> None:
        self._db = db
        self._directory = directory
        self._book = book
        self._writer = writer
        self._settings = settings
        self._page_tokens = page_tokens

    async def IngestClaims(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[history_pb2.IngestClaimsRequest],
        context: grpc.aio.ServicerContext,
    ) -> history_pb2.IngestClaimsResponse:
        require_feeder(require_principal())
        return await run_ingest(request_iterator, self._writer, self._settings)

    async def GetCareHistory(  # noqa: N802 - gRPC method name
        self, request: history_pb2.GetCareHistoryRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.GetCareHistoryResponse:
        readable = reading.check_reader(require_principal())
        return await reading.care_history(
            self._db,
            request,
            tokens=self._page_tokens,
            readable=readable,
            today=today_in_france(),
            window_months=self._settings.history_window_months,
            max_lines=self._settings.history_max_lines_per_read,
            directory=self._directory,
            book=self._book,
        )

    async def BackfillDossier(  # noqa: N802 - gRPC method name
        self, request: history_pb2.BackfillDossierRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.BackfillDossierResponse:
        return await materialize.backfill(
            self._db,
            request,
            scope=require_principal().subject,
            today=today_in_france(),
            window_months=self._settings.history_window_months,
        )
