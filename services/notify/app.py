"""The notify service process."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import grpc

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from kit.server import ServiceApp
from services.notify.delivery import RetryPolicy
from services.notify.email_sender import EmailSender
from services.notify.servicer import NotifyServicer
from services.notify.settings import NotifySettings
from services.notify.sms import SmsProvider, provider_from_settings


class NotifyApp(ServiceApp):
    """No outbox and no stream consumer yet: one-time codes come by direct gRPC call."""

    name = "notify"

    def __init__(self, settings: NotifySettings) -> None:
        super().__init__(settings)
        self.notify_settings = settings
        self.email = EmailSender(settings)
        self.sms: SmsProvider = provider_from_settings(
            settings.sms_provider, settings.sms_sink_path
        )
        self.retry_policy = RetryPolicy(
            attempts=settings.delivery_attempts,
            backoff_base_s=settings.delivery_backoff_base_s,
            backoff_max_s=settings.delivery_backoff_max_s,
        )
        self.pending_takeover = timedelta(seconds=settings.pending_takeover_s)

    def needs_nats(self) -> bool:
        return False

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(NotifyServicer(self), server)
        return [notify_pb2.DESCRIPTOR.services_by_name["NotifyService"].full_name]
