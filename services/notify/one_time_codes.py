"""SendOneTimeCode: deliver identity's login and recovery codes, once per request id.

The request id follows `kit.idempotency`: a repeated request gets the first
answer (same delivery_id) and sends nothing more, unless that delivery failed
(or its process died mid-send): then it is attempted again. The same id with
another message (channel, purpose or destination) is REQUEST_ID_REUSED. What
is hashed for that comparison is the masked destination, never the code nor
the full address (`models`: a leaked table reveals neither).

Sending happens outside any transaction (never hold one across a network
call): the claim commits the pending delivery first.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.notify.v1 import notify_pb2
from kit.db import transaction, utcnow
from kit.errors import ServiceError, invalid_argument, unavailable
from kit.idempotency import Key, Ledger, check_request_id
from kit.logs import get_logger
from services.notify import models, templates, validation
from services.notify.delivery import RetryPolicy, send_with_retries
from services.notify.email_sender import EmailSender
from services.notify.repository import deliveries
from services.notify.sms import SmsProvider

log = get_logger(__name__)

METHOD = "SendOneTimeCode"
REQUESTS = Ledger(models.processed_requests)
#: Kept back from the caller's deadline to record the outcome and answer in time.
DEADLINE_MARGIN_S = 0.25

CHANNELS: dict[int, str] = {
    notify_pb2.CHANNEL_EMAIL: models.CHANNEL_EMAIL,
    notify_pb2.CHANNEL_SMS: models.CHANNEL_SMS,
}
PURPOSES: dict[int, str] = {
    notify_pb2.CODE_PURPOSE_LOGIN: "login",
    notify_pb2.CODE_PURPOSE_RECOVERY: "recovery",
    notify_pb2.CODE_PURPOSE_ACTIVATION: "activation",
}


@dataclass(frozen=True)
class CodeRequest:
    key: Key
    channel: int
    destination: str
    masked: str
    code: str
    purpose: int
    expire_time: datetime | None


def validate(request: notify_pb2.SendOneTimeCodeRequest, now: datetime) -> CodeRequest:
    """Check every field; the messages name the field, never echo its value."""
    check_request_id(request.request_id)
    if request.channel not in CHANNELS:
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
    if request.purpose not in PURPOSES:
        raise invalid_argument(
            "PURPOSE_UNSPECIFIED",
            "purpose must be CODE_PURPOSE_LOGIN, CODE_PURPOSE_RECOVERY or CODE_PURPOSE_ACTIVATION.",
            "purpose",
        )
    if not validation.is_valid_code(request.code, request.purpose):
        raise invalid_argument(
            "CODE_MALFORMED",
            "code must be exactly 6 digits (XXXX-XXXX-XXXX for an activation code).",
            "code",
        )
    expire_time = request.expire_time.ToDatetime(UTC) if request.HasField("expire_time") else None
    if expire_time is not None and expire_time <= now:
        raise invalid_argument(
            "EXPIRE_TIME_INVALID", "expire_time must be in the future.", "expire_time"
        )
    masked = validation.mask(request.channel, request.destination)
    compared = notify_pb2.SendOneTimeCodeRequest(
        request_id=request.request_id,
        channel=request.channel,
        destination=masked,
        purpose=request.purpose,
    )
    return CodeRequest(
        key=REQUESTS.key(compared),
        channel=request.channel,
        destination=request.destination,
        masked=masked,
        code=request.code,
        purpose=request.purpose,
        expire_time=expire_time,
    )


@dataclass(frozen=True)
class Claim:
    response: notify_pb2.SendOneTimeCodeResponse
    #: The delivery this call must send; None: already sent, or being sent by another call.
    row: RowMapping | None


class OneTimeCodes:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        email: EmailSender,
        sms: SmsProvider,
        policy: RetryPolicy,
        takeover_after: timedelta,
    ) -> None:
        self._db = db
        self._email = email
        self._sms = sms
        #: Attempts and backoff of one send (tests shorten them on a running server).
        self.policy = policy
        self._takeover_after = takeover_after

    async def send(
        self,
        request: notify_pb2.SendOneTimeCodeRequest,
        caller: str,
        time_remaining: float | None,
    ) -> notify_pb2.SendOneTimeCodeResponse:
        """Deliver the code (at most once per request id); UNAVAILABLE DELIVERY_FAILED."""
        req = validate(request, utcnow())
        claim = await self._claim(req, caller)
        if claim.row is None:
            log.info("one_time_code_replayed", delivery_id=claim.response.delivery_id)
            return claim.response
        await self._deliver(req, claim.row, time_remaining)
        return claim.response

    async def _claim(self, req: CodeRequest, caller: str) -> Claim:
        """The answer of this request id, and the delivery to send if this call owns it."""
        for attempt in (0, 1):
            now = utcnow()
            try:
                async with transaction(self._db) as session:
                    prior = await REQUESTS.replay(
                        session,
                        req.key,
                        scope=caller,
                        method=METHOD,
                        response_type=notify_pb2.SendOneTimeCodeResponse,
                    )
                    if prior is None:
                        return await self._new(session, req, caller, now)
                    row = await deliveries.get(session, prior.delivery_id)
            except (IntegrityError, ServiceError) as exc:
                # A concurrent call with the same request id committed first: its answer.
                concurrent = isinstance(exc, IntegrityError) or (
                    exc.code == grpc.StatusCode.ABORTED and exc.reason == "REQUEST_IN_PROGRESS"
                )
                if attempt or not concurrent:
                    raise
                continue
            if row is None:
                return Claim(prior, None)
            return Claim(
                prior, await deliveries.take_over(self._db, row, now, self._takeover_after)
            )
        raise AssertionError("unreachable")

    async def _new(
        self, session: AsyncSession, req: CodeRequest, caller: str, now: datetime
    ) -> Claim:
        response = notify_pb2.SendOneTimeCodeResponse(
            delivery_id=str(uuid.uuid4()), masked_destination=req.masked
        )
        row = await deliveries.insert_pending(
            session,
            response.delivery_id,
            req.key.request_id,
            CHANNELS[req.channel],
            PURPOSES[req.purpose],
            req.masked,
            now,
        )
        await REQUESTS.remember(
            session, req.key, scope=caller, method=METHOD, response=response, now=now
        )
        return Claim(response, row)

    async def _deliver(
        self, req: CodeRequest, row: RowMapping, time_remaining: float | None
    ) -> None:
        db = self._db
        row_id, previous_attempts, delivery_id = row["id"], row["attempts"], row["delivery_id"]
        now = utcnow()
        if req.channel == notify_pb2.CHANNEL_EMAIL:
            email = templates.one_time_code_email(req.purpose, req.code, req.expire_time, now)

            async def send() -> None:
                await self._email.send(req.destination, email)

        else:
            text = templates.one_time_code_sms(req.purpose, req.code, req.expire_time, now)

            async def send() -> None:
                await self._sms.send(req.destination, text)

        async def on_failure(attempt: int, error: str) -> None:
            log.warning(
                "delivery_attempt_failed", delivery_id=delivery_id, attempt=attempt, error=error
            )
            await deliveries.record_failure(db, row_id, previous_attempts + attempt, error)

        deadline = (
            time.monotonic() + time_remaining - DEADLINE_MARGIN_S
            if time_remaining is not None
            else None
        )
        started = time.perf_counter()
        try:
            outcome = await send_with_retries(
                send, self.policy, deadline=deadline, on_failure=on_failure
            )
        except asyncio.CancelledError:
            # The caller went away: leave the row retryable rather than pending forever.
            await asyncio.shield(
                deliveries.finish(db, row_id, sent=False, attempts=None, error="Cancelled")
            )
            raise
        await deliveries.finish(
            db,
            row_id,
            sent=outcome.sent,
            attempts=previous_attempts + outcome.attempts,
            error=outcome.error,
        )
        log.info(
            "one_time_code_delivery",
            delivery_id=delivery_id,
            channel=CHANNELS[req.channel],
            purpose=PURPOSES[req.purpose],
            sent=outcome.sent,
            attempts=outcome.attempts,
            error=outcome.error,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        if not outcome.sent:
            raise unavailable("DELIVERY_FAILED", "The message could not be delivered; retry later.")
