"""The one clock every time rule reads: code and token expiry, throttles, grants, retries.

Services never call `datetime.now` or `time.monotonic` for a rule; they read the process
clock (`kit.clock.now()`, `kit.clock.monotonic()`) or a `Clock` handed to them, so a test
moves time instead of waiting for it:

- `SystemClock`: real time, what production runs on.
- `ManualClock`: stands still until a test moves it (`advance`, `set`); for a unit under
  test that must see exactly the instant the test chose (identity's code and token expiry).
- `ShiftedClock`: real time (or another clock) plus an offset a test can grow (`advance`):
  time still flows, so everything that waits for real events keeps working, and a test
  jumps a rule's duration (an emergency access's hour) in no time. `use(clock)` installs
  it as the process clock for in-process services and puts the previous one back after.
- `OffsetFileClock`: real time plus the number of seconds written in a file, re-read when
  the file changes. Processes started by the dev launcher or the test stack take it from
  `DMP_DEV_CLOCK_OFFSET_FILE`, so a test can say "30 days later" to the whole platform by
  writing one file. Development and tests only: `from_environment` refuses the variable
  unless the development package (`dmp_dev`, never in the production image) is installed,
  so a production process with the variable set does not start.

Offsets apply to `monotonic()` too: caches and limiters measured on the monotonic clock
(the gateway's token and decision caches) must age with the wall clock they mirror. An
offset may only grow; a smaller one would run monotonic time backwards.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

OFFSET_FILE_ENV = "DMP_DEV_CLOCK_OFFSET_FILE"
# Installed in development and test environments only (never in the production image).
DEV_PACKAGE = "dmp_dev"


class Clock(Protocol):
    """What a time rule reads: the wall-clock instant and a monotonic reading in seconds."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (durations, deadlines, caches)."""
        ...


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that stands still until it is moved; starts at `start` (default: real now)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("naive datetime refused: a clock reads UTC")
        self._monotonic = time.monotonic()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += delta
        self._monotonic += delta.total_seconds()

    def set(self, instant: datetime) -> None:
        """Jump to `instant` (forwards only, as `advance`)."""
        self.advance(instant - self._now)


class ShiftedClock:
    """`base` (default: real time) plus an offset that only grows: time flows, and a test
    can jump ahead."""

    def __init__(self, offset: timedelta = timedelta(0), *, base: Clock | None = None) -> None:
        if offset < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._offset = offset
        self._base = base if base is not None else SystemClock()

    @property
    def offset(self) -> timedelta:
        return self._offset

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def monotonic(self) -> float:
        return self._base.monotonic() + self._offset.total_seconds()

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._offset += delta


class OffsetFileClock:
    """Real time plus the seconds written in `path` (absent or empty file: no offset).

    The file is checked on every reading (one `stat`), and parsed again only when it
    changed, so a writer's new offset is seen by the next rule that reads the time.
    A malformed offset raises: a dev clock silently back at real time would make a
    "30 days later" test pass or fail for the wrong reason.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def offset_s(self) -> float:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return self._offset
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            with self._lock:
                text = self.path.read_text("ascii").strip()
                offset = float(text) if text else 0.0
                if offset < self._offset:
                    raise ValueError(f"{self.path}: the clock offset may only grow")
                self._offset, self._stamp = offset, stamp
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s())

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s()


def write_offset(path: Path, offset: timedelta) -> None:
    """Set the offset an `OffsetFileClock` reads (atomically: readers never see half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{offset.total_seconds():.6f}\n", "ascii")
    tmp.replace(path)


def development_installation() -> bool:
    """True where the development package is installed: a dev machine or a test run."""
    return importlib.util.find_spec(DEV_PACKAGE) is not None


def from_environment(
    environ: Mapping[str, str] | None = None, *, development: bool | None = None
) -> Clock:
    """The process clock the environment asks for: real time unless a development or test
    process names an offset file in DMP_DEV_CLOCK_OFFSET_FILE (refused anywhere else;
    `development` overrides the check of the installation, for its own test)."""
    env = os.environ if environ is None else environ
    path = env.get(OFFSET_FILE_ENV, "")
    if not path:
        return SystemClock()
    if not (development_installation() if development is None else development):
        raise RuntimeError(
            f"{OFFSET_FILE_ENV} is set, but a shifted clock is for development and tests "
            "only: unset it"
        )
    return OffsetFileClock(Path(path))


class _ProcessClock:
    """The installed process clock, looked up at every reading (so `use` reaches objects
    that were given the process clock before a test installed another one)."""

    def now(self) -> datetime:
        return _installed.now()

    def monotonic(self) -> float:
        return _installed.monotonic()


_installed: Clock = from_environment()
PROCESS: Clock = _ProcessClock()


def now() -> datetime:
    """The process clock's current instant (UTC)."""
    return _installed.now()


def monotonic() -> float:
    """The process clock's monotonic reading in seconds."""
    return _installed.monotonic()


def timestamp() -> float:
    """The process clock's instant in seconds since the epoch (where `time.time()` was)."""
    return _installed.now().timestamp()


def current() -> Clock:
    """The clock installed now (not a proxy: later `use` calls do not change it)."""
    return _installed


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Install `clock` as the process clock for the block (tests of in-process services)."""
    global _installed  # noqa: PLW0603 - the one process-wide clock, swapped by tests only
    previous, _installed = _installed, clock
    try:
        yield clock
    finally:
        _installed = previous
