"""What `dmp dev up --replicas 2 --nats-nodes 3` starts, on which ports, and what callers dial
(no process started here: tests/replicas runs such a stack under faults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmp_cli import catalog
from dmp_dev.launcher.nats_server import ClusterNode, NatsServer
from dmp_dev.launcher.processes import StartupError
from dmp_dev.launcher.stack import DevStack, StackConfig
from kit.nats import server_urls


def test_one_replica_and_one_node_stay_what_make_run_always_was(tmp_path: Path) -> None:
    cfg = StackConfig(var_dir=tmp_path)
    stack = DevStack(cfg)
    assert cfg.target(catalog.spec("records")) == "127.0.0.1:50052"
    assert cfg.nats_url == "nats://127.0.0.1:4233"
    assert cfg.stream_replicas == 1
    assert [n.name for n in stack.nats_cluster.nodes] == ["nats"]
    assert not stack.nats.sync_always
    assert stack.nats.cluster is None
    assert "records-2" not in stack.names


def test_replicas_get_ports_of_their_own_and_callers_dial_them_all(tmp_path: Path) -> None:
    cfg = StackConfig(var_dir=tmp_path, replicas=2, nats_nodes=3)
    stack = DevStack(cfg)
    records = catalog.spec("records")
    assert cfg.target(records) == "ipv4:127.0.0.1:50052,127.0.0.1:50057"
    assert cfg.gateway_ports(1) == (8447, 8448, 8449, 8450)
    assert cfg.nats_url.split(",") == [f"nats://127.0.0.1:{p}" for p in (4233, 4234, 4235)]
    assert server_urls(cfg.nats_url) == cfg.nats_url.split(",")
    assert cfg.nats_route_ports == [4236, 4237, 4238]
    assert cfg.stream_replicas == 3
    assert {"records", "records-2", "gateway", "gateway-2"} <= set(stack.names)
    ports = stack._ports()
    assert len(set(ports.values())) == len(ports), "two processes on one port"
    node = stack.nats_cluster.node("nats-2")
    assert node.sync_always
    assert node.cluster == ClusterNode("nats-2", 4237, (4236, 4237, 4238))


def test_a_cluster_node_config_has_routes_and_fsyncs_every_write(tmp_path: Path) -> None:
    node = NatsServer(
        tmp_path / "n1",
        4300,
        cluster=ClusterNode("nats-1", 4310, (4310, 4311, 4312)),
        sync_always=True,
    )
    text = node.config_text()
    assert '"sync_interval": "always"' in text
    assert "nats-route://127.0.0.1:4311" in text
    assert '"server_name": "nats-1"' in text


def test_zero_replicas_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupError):
        DevStack(StackConfig(var_dir=tmp_path, replicas=0))
