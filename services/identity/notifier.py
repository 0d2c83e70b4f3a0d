"""Client of NotifyService.SendOneTimeCode: the only way codes leave identity."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from kit.clients import InternalCredentials, channel
from kit.errors import error_info, unavailable
from kit.logs import get_logger

log = get_logger(__name__)

SEND_METHOD = "/dmp.notify.v1.NotifyService/SendOneTimeCode"
SMS = "sms"
EMAIL = "email"
_CHANNELS = {SMS: notify_pb2.CHANNEL_SMS, EMAIL: notify_pb2.CHANNEL_EMAIL}
PURPOSES = {
    "login": notify_pb2.CODE_PURPOSE_LOGIN,
    "recovery": notify_pb2.CODE_PURPOSE_RECOVERY,
    # A DMP Info Service reissue to a new contact (the code is XXXX-XXXX-XXXX).
    "activation": notify_pb2.CODE_PURPOSE_ACTIVATION,
}


class Notifier:
    """One long-lived channel to notify; each call carries identity's internal principal."""

    def __init__(self, target: str, timeout_s: float, credentials: InternalCredentials) -> None:
        self._channel = channel(target)
        self._stub = notify_pb2_grpc.NotifyServiceStub(self._channel)
        self._timeout = timeout_s
        self._credentials = credentials

    async def send_code(
        self,
        *,
        challenge_id: str,
        channel_name: str,
        destination: str,
        code: str,
        purpose: str,
        expires_at: datetime,
    ) -> str:
        """Deliver `code`; returns the masked destination. UNAVAILABLE CODE_DELIVERY_FAILED."""
        expire_time = timestamp_pb2.Timestamp()
        expire_time.FromDatetime(expires_at)
        request = notify_pb2.SendOneTimeCodeRequest(
            # The challenge id doubles as notify's idempotency key: one code, one message.
            request_id=str(uuid.UUID(challenge_id)),
            channel=_CHANNELS[channel_name],
            destination=destination,
            code=code,
            purpose=PURPOSES[purpose],
            expire_time=expire_time,
        )
        try:
            response = await self._stub.SendOneTimeCode(
                request, timeout=self._timeout, metadata=self._credentials.metadata(SEND_METHOD)
            )
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            log.warning(
                "code_delivery_failed",
                challenge=challenge_id,
                status=exc.code().name,
                reason=info.reason if info else "",
            )
            raise unavailable(
                "CODE_DELIVERY_FAILED", "The one-time code could not be sent; try again."
            ) from exc
        return str(response.masked_destination)

    async def close(self) -> None:
        await self._channel.close()
