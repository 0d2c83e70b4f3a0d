"""A local SMTP server that writes every message it receives to a .eml file.

notify sends real SMTP in every environment; in development this sink
receives it, so a developer reads one-time codes in `var/mail/` instead of
configuring a mail provider.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _EmlWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        # Names sort in arrival order (to the nanosecond): readers take "the newest code".
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
        name = f"{stamp}.{now % 1_000_000_000:09d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.directory / name)
        return "250 Message accepted for delivery"


class MailSink:
    """aiosmtpd in a background thread of the launcher, listening on loopback only."""

    def __init__(self, directory: Path, port: int, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> MailSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = _EmlWriter(self.directory)
        self._controller = Controller(handler, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
