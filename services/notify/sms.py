"""SMS provider adapters.

Production plugs an operator's HTTP API behind `SmsProvider`; development and
tests use `FileSmsSink`, which appends each SMS as one JSON line to a file
that only the service's user can read (it holds live one-time codes).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Protocol

from kit import clock


class SmsProvider(Protocol):
    """Hands one SMS to the operator; raises on failure (OSError and timeouts are transient)."""

    async def send(self, to: str, text: str, *, reference: str | None = None) -> None:
        """`reference`: idempotency key passed to the operator (same on a resend)."""
        ...


class FileSmsSink:
    """Appends `{"to", "text", "time"[, "reference"]}` lines to `path`.

    Mode 0600, parent 0700 if created.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    async def send(self, to: str, text: str, *, reference: str | None = None) -> None:
        record = {"to": to, "text": text, "time": clock.now().isoformat()}
        if reference is not None:
            record["reference"] = reference
        line = json.dumps(record, ensure_ascii=False)
        await asyncio.to_thread(self._append, (line + "\n").encode())

    def _append(self, data: bytes) -> None:
        # The thread lock orders writers of this process; flock those of other
        # processes sharing the file (e.g. two notify replicas in `dmp dev up`).
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.fchmod(fd, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def provider_from_settings(kind: str, sink_path: str) -> SmsProvider:
    if kind == "file":
        return FileSmsSink(sink_path)
    raise ValueError(f"unknown SMS provider {kind!r}")
