"""The one development SMTP sink: accepts every message on loopback and keeps it.

notify sends real SMTP in every environment; in development this sink
receives it, so a developer reads one-time codes in `var/mail/` (the
launcher gives it a `directory`: one .eml file per message) instead of
configuring a mail provider. Tests read the accepted messages in memory
(`messages`, `messages_to`), stop and start it on the same port to play a
relay going down and coming back, and with `accept_delay_s` hold each message
that long before answering 250, like a relay writing its queue, so sends are
provably in flight (`in_data`) when a test signals notify.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


class MailSink:
    """aiosmtpd in a background thread, listening on loopback only."""

    def __init__(
        self,
        port: int,
        directory: Path | None = None,
        *,
        host: str = "127.0.0.1",
        accept_delay_s: float = 0.0,
        keep: bool = True,
    ) -> None:
        """`directory`: also write each message there as a .eml file; `keep`: in `messages`."""
        self.port = port
        self.directory = directory
        self.host = host
        self.accept_delay_s = accept_delay_s
        self.keep = keep
        self.messages: list[ReceivedMail] = []
        #: Messages received in full and not yet answered (250) at this instant.
        self.in_data = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> MailSink:
        if self._controller is None:
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
            controller = Controller(_Handler(self), hostname=self.host, port=self.port)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        with self._lock:
            self.in_data = 0  # handlers cut short by the stop never reach their `finally`

    def messages_to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self.messages if address.lower() in map(str.lower, m.rcpt_tos)]

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m.message["Message-ID"]) for m in self.messages]

    def _accepted(self, raw: bytes, envelope: Any) -> None:
        if self.directory is not None:
            _write_eml(self.directory, raw)
        if self.keep:
            message = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message)
            with self._lock:
                self.messages.append(mail)


def _write_eml(directory: Path, raw: bytes) -> None:
    # Names sort in arrival order (to the nanosecond): readers take "the newest code".
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    name = f"{stamp}.{now % 1_000_000_000:09d}-{uuid.uuid4().hex[:8]}.eml"
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(raw)
    tmp.replace(directory / name)


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        sink = self._sink
        with sink._lock:
            sink.in_data += 1
        try:
            if sink.accept_delay_s:
                # Stopped meanwhile (relay down): the message is not accepted.
                await asyncio.sleep(sink.accept_delay_s)
            # Accepted from here on, whether or not the client is still there to read the 250.
            sink._accepted(raw, envelope)
        finally:
            with sink._lock:
                sink.in_data -= 1
        return "250 Message accepted for delivery"
