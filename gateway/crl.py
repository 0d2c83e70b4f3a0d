"""The client CA's revocation list, read at start and again whenever the file changes.

A card reported lost or stolen is added to the CRL (`dmp pki revoke`, or the
authority's published list dropped in place); the gateway polls the file
every `crl_reload_interval_s` (a change of modification time, size or inode),
verifies the new list's signature against the client CA and installs it, and
cached resolutions of newly revoked cards are dropped at once: a revoked card
is refused at most one interval (plus the load time) after the file changed,
without a restart. A list that does not load or is not signed by the CA is
logged and ignored; the previous one stays in force (a half-written or
forged file must not un-revoke anything). At start an invalid list stops the
gateway instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from cryptography import x509

from kit.logs import get_logger

log = get_logger(__name__)
Stamp = tuple[int, int, int]


def load_crl_serials(path: str, ca_pem: bytes) -> frozenset[int]:
    """Revoked serial numbers of a CRL signed by the client CA (ValueError otherwise)."""
    if not path:
        return frozenset()
    with open(path, "rb") as handle:
        crl = x509.load_pem_x509_crl(handle.read())
    ca = x509.load_pem_x509_certificate(ca_pem)
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise ValueError("the CRL is not signed by the client CA")
    return frozenset(entry.serial_number for entry in crl)


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CrlWatcher:
    """Polls the CRL file; hands every valid new list to `install`."""

    def __init__(
        self,
        path: str,
        ca_pem: bytes,
        install: Callable[[frozenset[int]], int],
        interval_s: float,
    ) -> None:
        self._path = path
        self._ca_pem = ca_pem
        self._install = install
        self._interval = interval_s
        self._stamp: Stamp | None = None
        self._serials: frozenset[int] = frozenset()
        self._task: asyncio.Task[None] | None = None

    def load(self) -> frozenset[int]:
        """The list at start: raises if it is missing or invalid (fail closed)."""
        self._stamp = _stamp(self._path) if self._path else None
        self._serials = load_crl_serials(self._path, self._ca_pem)
        return self._serials

    def start(self) -> None:
        if self._path:
            self._task = asyncio.create_task(self._run(), name="crl-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the watcher die: the old list stays
                log.error("crl_poll_failed", error_type=type(exc).__name__)

    async def poll(self) -> bool:
        """Reload if the file changed; True when a new list was installed."""
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a bad file is reported once, retried when it changes again
        try:
            # A national CRL can be large: parse and verify off the event loop.
            serials = await asyncio.to_thread(load_crl_serials, self._path, self._ca_pem)
        except (OSError, ValueError) as exc:
            log.error("crl_invalid", path=self._path, error_type=type(exc).__name__)
            return False
        added = len(serials - self._serials)
        self._serials = serials
        dropped = self._install(serials)
        log.info("crl_reloaded", revoked=len(serials), newly_revoked=added, dropped=dropped)
        return True
