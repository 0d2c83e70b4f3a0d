"""E-mail delivery through an SMTP relay (aiosmtplib).

`send` returns as soon as the relay answered 250 to DATA, the moment it took
responsibility for the message: the caller can record the outcome right away,
while the connection is closed (QUIT) in the background. Waiting for the QUIT
reply first would only lengthen the window in which a crash leaves a message
accepted by the relay but not recorded as sent (and sent again later).
"""

from __future__ import annotations

import asyncio
import contextlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from kit import clock
from kit.logs import get_logger
from services.notify.settings import NotifySettings
from services.notify.templates import EmailText

log = get_logger(__name__)


class EmailSender:
    """Sends plain-text e-mails; one SMTP connection per message."""

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings
        self._from = Address(display_name=settings.mail_from_name, addr_spec=settings.mail_from)
        self._closing: set[asyncio.Task[None]] = set()

    def message_id(self, key: str) -> str:
        """A Message-ID fixed by `key`: a resent notification is recognisably the same mail."""
        return f"<{key}@{self._from.domain}>"

    def build(
        self, to: str, text: EmailText, *, message_id: str | None = None, urgent: bool = False
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._from
        message["To"] = Address(addr_spec=to)
        message["Subject"] = text.subject
        message["Date"] = format_datetime(clock.now())
        message["Message-ID"] = message_id or make_msgid(domain=self._from.domain)
        message["Auto-Submitted"] = "auto-generated"
        if urgent:
            message["Importance"] = "high"
            message["Priority"] = "urgent"
            message["X-Priority"] = "1"
        message.set_content(text.body)
        return message

    async def send(
        self, to: str, text: EmailText, *, message_id: str | None = None, urgent: bool = False
    ) -> None:
        """Return once the relay accepted the message; raise aiosmtplib / OS errors as they come.

        The whole SMTP transaction is bounded by `smtp_timeout_s` (aiosmtplib's
        own timeout applies per command), so a stalled relay cannot hold a
        send, or a graceful shutdown waiting for it, longer than that.
        """
        cfg = self._settings
        password = cfg.smtp_password.get_secret_value()
        client = aiosmtplib.SMTP(
            hostname=cfg.smtp_host,
            port=cfg.smtp_port,
            username=cfg.smtp_username or None,
            password=password if cfg.smtp_username else None,
            use_tls=cfg.smtp_use_tls,
            start_tls=cfg.smtp_start_tls,
            validate_certs=cfg.smtp_validate_certs,
            timeout=cfg.smtp_timeout_s,
        )
        message = self.build(to, text, message_id=message_id, urgent=urgent)
        try:
            async with asyncio.timeout(cfg.smtp_timeout_s):
                await client.connect()
                await client.send_message(message, sender=cfg.mail_from, recipients=[to])
        except BaseException:
            client.close()
            raise
        task = asyncio.create_task(self._quit(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.quit()
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:  # the message is already accepted: nothing to retry
            log.debug("smtp_quit_failed", error_type=type(exc).__name__)
            client.close()

    async def aclose(self, timeout_s: float = 1.0) -> None:
        """Let the QUITs in progress finish (briefly), then drop the connections."""
        if not self._closing:
            return
        _, late = await asyncio.wait(set(self._closing), timeout=timeout_s)
        for task in late:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*late, return_exceptions=True)
