"""gRPC handlers of `dmp.notify.v1.NotifyService`: check the caller, delegate.

One-time codes go out by direct call (`one_time_codes`); ListNotifications
lists the event notifications (`listing`), which are consumed and sent outside
any RPC (`intake`, `dispatcher`).
"""

from __future__ import annotations

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from kit import pagination
from kit.context import current_principal
from kit.directory import DirectoryClient
from kit.logs import get_logger
from kit.principal import require_kind
from services.notify import listing, preferences
from services.notify.one_time_codes import OneTimeCodes

log = get_logger(__name__)


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        codes: OneTimeCodes,
        page_tokens: pagination.PageTokens,
        directory: DirectoryClient | None = None,
    ) -> None:
        self._db = db
        self._directory = directory
        self._codes = codes
        self._page_tokens = page_tokens

    async def SendOneTimeCode(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.SendOneTimeCodeRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.SendOneTimeCodeResponse:
        # The interceptor already refuses non-internal callers; checked again here
        # because this method hands out login codes.
        caller = require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL)
        return await self._codes.send(request, caller.subject, context.time_remaining())

    async def SetContactPreferences(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.SetContactPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ContactPreferences:
        saved = await preferences.change(self._db, request, current_principal())
        log.info("contact_preferences_set", kinds=len(saved.choices))
        return saved

    async def GetContactPreferences(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.GetContactPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ContactPreferences:
        patient = preferences.patient_of(request.name)
        preferences.authorize(current_principal(), patient)
        return await preferences.load(self._db, patient)

    async def ListNotifications(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ListNotificationsResponse:
        # Authorization first, so an outsider learns nothing from validation errors.
        patient = listing.patient_of(request.parent)
        listing.authorize(current_principal(), patient)
        size = listing.page_size(request.page_size)
        return await listing.list_page(
            self._db,
            self._page_tokens,
            patient,
            size,
            request.page_token,
            directory=self._directory,
        )
