"""gRPC handlers of `dmp.history.v1.HistoryFeedService`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import TYPE_CHECKING, Any

from dmp.authz.v1 import principal_pb2
from dmp.history.v1 import history_pb2, history_pb2_grpc
from kit import pagination
from kit.context import require_principal
from kit.errors import invalid_argument, permission_denied
from kit.principal import require_kind
from services.history_feed import reading
from services.history_feed.ingest import run_ingest, today_in_france
from services.history_feed.validation import LineError, to_date

if TYPE_CHECKING:
    from services.history_feed.app import HistoryFeedApp


def require_feeder(principal: principal_pb2.Principal) -> None:
    """Only the AMO's service certificate writes history (docs/ARCHITECTURE.md, Actors)."""
    require_kind(principal, principal_pb2.PRINCIPAL_KIND_SERVICE)
    if reading.AMO_FEEDER_ROLE not in principal.roles:
        raise permission_denied("AMO_FEEDER_ONLY", "Only the AMO feeder may send claim lines.")


class HistoryFeedServicer(history_pb2_grpc.HistoryFeedServiceServicer):
    def __init__(self, app: HistoryFeedApp) -> None:
        self._app = app
        self._page_tokens = pagination.PageTokens.for_service(app.settings, "history_feed")

    async def IngestClaims(  # noqa: N802
        self, request_iterator: AsyncIterator[history_pb2.IngestClaimsRequest], context: Any
    ) -> history_pb2.IngestClaimsResponse:
        require_feeder(require_principal())
        app = self._app
        return await run_ingest(request_iterator, app.writer, app.history_settings)

    async def GetCareHistory(  # noqa: N802
        self, request: history_pb2.GetCareHistoryRequest, context: Any
    ) -> history_pb2.GetCareHistoryResponse:
        readable = reading.check_reader(require_principal())
        settings = self._app.history_settings
        return await reading.care_history(
            self._app.db,
            request,
            tokens=self._page_tokens,
            readable=readable,
            today=today_in_france(),
            window_months=settings.history_window_months,
            max_lines=settings.history_max_lines_per_read,
        )

    async def BackfillDossier(  # noqa: N802
        self, request: history_pb2.BackfillDossierRequest, context: Any
    ) -> history_pb2.BackfillDossierResponse:
        since: date | None = None
        if request.HasField("since_date"):
            try:
                since = to_date(request.since_date, "INVALID_SINCE_DATE", "since_date")
            except LineError as exc:
                raise invalid_argument(exc.reason, exc.detail, "since_date") from None
        return await self._app.backfill(
            dossier=request.name,
            patient_ins=request.patient_ins,
            since_date=since,
            request_id=request.request_id,
        )
