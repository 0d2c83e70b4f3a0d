"""kit.clock: the clocks a time rule reads, the process clock, the dev offset file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit import clock
from kit.db import utcnow
from kit.errors import ServiceError
from kit.tokens import AccessTokenIssuer, AccessTokenVerifier

DAY = timedelta(days=1)


def test_manual_clock_stands_still_until_moved() -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    manual = clock.ManualClock(start)
    mono = manual.monotonic()
    assert manual.now() == start
    manual.advance(timedelta(minutes=5))
    assert manual.now() == start + timedelta(minutes=5)
    assert manual.monotonic() == mono + 300
    manual.set(start + DAY)
    assert manual.now() == start + DAY
    with pytest.raises(ValueError, match="backwards"):
        manual.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="naive"):
        clock.ManualClock(datetime(2026, 3, 1))


def test_shifted_clock_flows_and_jumps() -> None:
    shifted = clock.ShiftedClock()
    before = shifted.now()
    shifted.advance(30 * DAY)
    assert shifted.offset == 30 * DAY
    assert shifted.now() - before >= 30 * DAY
    assert shifted.monotonic() >= 30 * 86400
    with pytest.raises(ValueError, match="backwards"):
        shifted.advance(-DAY)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    on_manual = clock.ShiftedClock(DAY, base=clock.ManualClock(start))
    assert on_manual.now() == start + DAY


def test_the_process_clock_is_what_services_read() -> None:
    key = Ed25519PrivateKey.generate()
    token = AccessTokenIssuer(key).issue(account="a", ins="1" * 13, session_id="s").token
    verifier = AccessTokenVerifier([key.public_key()])
    verifier.verify(token)
    shifted = clock.ShiftedClock(30 * DAY)
    real = datetime.now(UTC)
    with clock.use(shifted):
        assert clock.current() is shifted
        assert utcnow() - real >= 30 * DAY
        assert clock.PROCESS.now() - real >= 30 * DAY
        # Token expiry is a time rule: 30 days later the token has expired.
        with pytest.raises(ServiceError) as expired:
            verifier.verify(token)
        assert expired.value.reason == "TOKEN_EXPIRED"
    assert utcnow() - real < DAY
    verifier.verify(token)


def test_offset_file_is_read_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    offset = clock.OffsetFileClock(path)
    assert offset.offset_s() == 0.0  # no file yet: real time
    clock.write_offset(path, 30 * DAY)
    assert offset.now() - datetime.now(UTC) > 29 * DAY
    clock.write_offset(path, 31 * DAY)
    assert offset.offset_s() == 31 * 86400
    clock.write_offset(path, DAY)
    with pytest.raises(ValueError, match="only grow"):
        offset.offset_s()


def test_offset_file_is_refused_outside_development(tmp_path: Path) -> None:
    env = {clock.OFFSET_FILE_ENV: str(tmp_path / "offset")}
    with pytest.raises(RuntimeError, match="development and tests only"):
        clock.from_environment(env, development=False)
    assert isinstance(clock.from_environment(env, development=True), clock.OffsetFileClock)
    assert isinstance(clock.from_environment({}, development=False), clock.SystemClock)


def test_a_process_takes_the_offset_from_its_environment(tmp_path: Path) -> None:
    """What the launcher's processes do: the variable names the file, the clock follows it."""
    path = tmp_path / "offset"
    clock.write_offset(path, 30 * DAY)
    script = "import json; from kit import clock; print(json.dumps(clock.now().isoformat()))"
    env = {**os.environ, clock.OFFSET_FILE_ENV: str(path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    seen = datetime.fromisoformat(json.loads(out.stdout))
    assert seen - datetime.now(UTC) > 29 * DAY
