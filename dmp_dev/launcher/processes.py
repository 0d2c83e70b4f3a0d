"""Service processes of the dev stack: start, wait until SERVING, stop in order."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class StartupError(RuntimeError):
    """A process died or did not become ready; the message says which and why."""


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class ServiceProcess:
    """One `python -m <module>` child (a service or the gateway) with its log file."""

    name: str
    module: str
    target: str
    log_file: Path
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our interpreter and module
            [sys.executable, "-m", self.module],
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own session: the launcher decides the shutdown order, not the terminal.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return None if self.proc is None else self.proc.poll()

    def serving(self, timeout_s: float = 1.0) -> bool:
        try:
            with grpc.insecure_channel(self.target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
                )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def terminate(self) -> None:
        """SIGTERM: the service stops serving, finishes in-flight calls, closes its resources."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or an OOM kill would leave things."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def wait_stopped(self, timeout_s: float) -> bool:
        """Wait for the exit, SIGKILL if it overruns; True if it stopped on its own."""
        clean = True
        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(timeout_s, 0.0))
            except subprocess.TimeoutExpired:
                clean = False
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return clean

    def failure(self, what: str) -> StartupError:
        return StartupError(
            f"{self.name} {what}; last lines of {self.log_file}:\n{log_tail(self.log_file)}"
        )


def wait_until_serving(processes: Sequence[ServiceProcess], timeout_s: float) -> None:
    """Block until every process answers SERVING; raise StartupError on death or timeout."""
    deadline = time.monotonic() + timeout_s
    pending = list(processes)
    while pending:
        for process in list(pending):
            code = process.exited()
            if code is not None:
                raise process.failure(f"exited with code {code} during start-up")
            if process.serving():
                pending.remove(process)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(p.name for p in pending)
            raise pending[0].failure(f"not SERVING after {timeout_s:.0f}s (waiting for {names})")
        time.sleep(0.1)


def stop_all(processes: Sequence[ServiceProcess], timeout_s: float) -> list[str]:
    """SIGTERM in reverse start order (callers first), then wait for all under one deadline.

    Waiting for each in turn would add every process's exit time (about a second each
    on two cores); the signals still go out in dependency order. Returns the names of
    the processes that had to be killed.
    """
    ordered = list(reversed(processes))
    for process in ordered:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    return [p.name for p in ordered if not p.wait_stopped(deadline - time.monotonic())]
