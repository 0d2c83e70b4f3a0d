"""E-mail delivery through an SMTP relay (aiosmtplib)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from services.notify.settings import NotifySettings
from services.notify.templates import EmailText


class EmailSender:
    """Sends plain-text e-mails; one SMTP connection per message (codes are rare and urgent)."""

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings
        self._from = Address(display_name=settings.mail_from_name, addr_spec=settings.mail_from)

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
        message["Date"] = format_datetime(datetime.now(UTC))
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
        """Raise aiosmtplib / OS errors as they come; `delivery` classifies them."""
        cfg = self._settings
        password = cfg.smtp_password.get_secret_value()
        await aiosmtplib.send(
            self.build(to, text, message_id=message_id, urgent=urgent),
            sender=cfg.mail_from,
            recipients=[to],
            hostname=cfg.smtp_host,
            port=cfg.smtp_port,
            username=cfg.smtp_username or None,
            password=password if cfg.smtp_username else None,
            use_tls=cfg.smtp_use_tls,
            start_tls=cfg.smtp_start_tls,
            validate_certs=cfg.smtp_validate_certs,
            timeout=cfg.smtp_timeout_s,
        )
