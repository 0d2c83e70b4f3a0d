"""gRPC handlers of `dmp.notify.v1.NotifyService`.

ListNotifications lists the event notifications (`listing`); the events
themselves are consumed and sent outside any RPC (`intake`, `dispatcher`).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from kit import pagination
from kit.context import current_principal
from kit.db import utcnow
from kit.errors import invalid_argument, unavailable
from kit.logs import get_logger
from kit.principal import require_kind
from services.notify import listing, models, preferences, store, templates, validation
from services.notify.delivery import send_with_retries

if TYPE_CHECKING:
    from services.notify.app import NotifyApp

log = get_logger(__name__)

MAX_REQUEST_ID_LENGTH = 64
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")
#: Kept back from the caller's deadline to record the outcome and answer in time.
DEADLINE_MARGIN_S = 0.25

_CHANNELS: dict[int, str] = {
    notify_pb2.CHANNEL_EMAIL: models.CHANNEL_EMAIL,
    notify_pb2.CHANNEL_SMS: models.CHANNEL_SMS,
}
_PURPOSES: dict[int, str] = {
    notify_pb2.CODE_PURPOSE_LOGIN: "login",
    notify_pb2.CODE_PURPOSE_RECOVERY: "recovery",
}


@dataclass(frozen=True)
class CodeRequest:
    request_id: str
    channel: int
    destination: str
    code: str
    purpose: int
    expire_time: datetime | None


def validate_code_request(request: notify_pb2.SendOneTimeCodeRequest, now: datetime) -> CodeRequest:
    """Check every field; the messages name the field, never echo its value."""
    request_id = request.request_id
    if (
        not request_id
        or len(request_id) > MAX_REQUEST_ID_LENGTH
        or not _REQUEST_ID.fullmatch(request_id)
    ):
        raise invalid_argument(
            "REQUEST_ID_INVALID",
            f"request_id is required: 1 to {MAX_REQUEST_ID_LENGTH} characters [A-Za-z0-9._:-].",
            "request_id",
        )
    if request.channel not in _CHANNELS:
        raise invalid_argument(
            "CHANNEL_UNSPECIFIED", "channel must be CHANNEL_EMAIL or CHANNEL_SMS.", "channel"
        )
    if not validation.destination_matches(request.channel, request.destination):
        expected = (
            "an e-mail address"
            if request.channel == notify_pb2.CHANNEL_EMAIL
            else "an E.164 phone number (+ and 8 to 15 digits)"
        )
        raise invalid_argument(
            "DESTINATION_INVALID", f"destination must be {expected}.", "destination"
        )
    if not validation.is_valid_code(request.code):
        raise invalid_argument("CODE_MALFORMED", "code must be exactly 6 digits.", "code")
    if request.purpose not in _PURPOSES:
        raise invalid_argument(
            "PURPOSE_UNSPECIFIED",
            "purpose must be CODE_PURPOSE_LOGIN or CODE_PURPOSE_RECOVERY.",
            "purpose",
        )
    expire_time = request.expire_time.ToDatetime(UTC) if request.HasField("expire_time") else None
    if expire_time is not None and expire_time <= now:
        raise invalid_argument(
            "EXPIRE_TIME_INVALID", "expire_time must be in the future.", "expire_time"
        )
    return CodeRequest(
        request_id=request_id,
        channel=request.channel,
        destination=request.destination,
        code=request.code,
        purpose=request.purpose,
        expire_time=expire_time,
    )


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    def __init__(self, app: NotifyApp) -> None:
        self._app = app
        self._page_tokens = pagination.PageTokens.for_service(app.settings, "notify")

    async def SendOneTimeCode(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.SendOneTimeCodeRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.SendOneTimeCodeResponse:
        # The interceptor already refuses non-internal callers; checked again here
        # because this method hands out login codes.
        require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL)
        now = utcnow()
        req = validate_code_request(request, now)
        app = self._app
        masked = validation.mask(req.channel, req.destination)
        claim = await store.claim(
            app.db,
            request_id=req.request_id,
            channel=_CHANNELS[req.channel],
            kind=models.KIND_ONE_TIME_CODE,
            purpose=_PURPOSES[req.purpose],
            masked_destination=masked,
            takeover_after=app.pending_takeover,
        )
        row = claim.row
        response = notify_pb2.SendOneTimeCodeResponse(
            delivery_id=row["delivery_id"], masked_destination=masked
        )
        if not claim.owned:
            log.info("one_time_code_replayed", delivery_id=row["delivery_id"], status=row["status"])
            return response
        await self._deliver(req, row["id"], row["attempts"], row["delivery_id"], context)
        return response

    async def _deliver(
        self,
        req: CodeRequest,
        row_id: int,
        previous_attempts: int,
        delivery_id: str,
        context: grpc.aio.ServicerContext,
    ) -> None:
        app = self._app
        now = utcnow()
        if req.channel == notify_pb2.CHANNEL_EMAIL:
            email = templates.one_time_code_email(req.purpose, req.code, req.expire_time, now)

            async def send() -> None:
                await app.email.send(req.destination, email)

        else:
            text = templates.one_time_code_sms(req.purpose, req.code, req.expire_time, now)

            async def send() -> None:
                await app.sms.send(req.destination, text)

        async def on_failure(attempt: int, error: str) -> None:
            log.warning(
                "delivery_attempt_failed", delivery_id=delivery_id, attempt=attempt, error=error
            )
            await store.record_failure(app.db, row_id, previous_attempts + attempt, error)

        remaining = context.time_remaining()
        deadline = (
            time.monotonic() + remaining - DEADLINE_MARGIN_S if remaining is not None else None
        )
        started = time.perf_counter()
        try:
            outcome = await send_with_retries(
                send, app.retry_policy, deadline=deadline, on_failure=on_failure
            )
        except asyncio.CancelledError:
            # The caller went away: leave the row retryable rather than pending forever.
            await asyncio.shield(
                store.finish(app.db, row_id, sent=False, attempts=None, error="Cancelled")
            )
            raise
        await store.finish(
            app.db,
            row_id,
            sent=outcome.sent,
            attempts=previous_attempts + outcome.attempts,
            error=outcome.error,
        )
        log.info(
            "one_time_code_delivery",
            delivery_id=delivery_id,
            channel=_CHANNELS[req.channel],
            purpose=_PURPOSES[req.purpose],
            sent=outcome.sent,
            attempts=outcome.attempts,
            error=outcome.error,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        if not outcome.sent:
            raise unavailable("DELIVERY_FAILED", "The message could not be delivered; retry later.")

    async def SetContactPreferences(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.SetContactPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ContactPreferences:
        # Authorization first, so an outsider learns nothing from validation errors.
        wanted = request.contact_preferences
        patient = preferences.patient_of(wanted.name)
        preferences.authorize(current_principal(), patient)
        preferences.check_request_id(request.request_id)
        prefs = preferences.validate(wanted)
        saved = await preferences.save(self._app.db, patient, prefs)
        log.info("contact_preferences_set", kinds=len(prefs.choices))
        return saved

    async def GetContactPreferences(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.GetContactPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ContactPreferences:
        patient = preferences.patient_of(request.name)
        preferences.authorize(current_principal(), patient)
        return await preferences.load(self._app.db, patient)

    async def ListNotifications(  # noqa: N802 - gRPC method name
        self, request: notify_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> notify_pb2.ListNotificationsResponse:
        # Authorization first, so an outsider learns nothing from validation errors.
        patient = listing.patient_of(request.parent)
        listing.authorize(current_principal(), patient)
        size = listing.page_size(request.page_size)
        return await listing.list_page(
            self._app.db, self._page_tokens, patient, size, request.page_token
        )
