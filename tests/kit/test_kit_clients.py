"""kit.clients: gRPC's retryPolicy retries UNAVAILABLE on reads and request_id methods only.

A real grpc.aio server answers UNAVAILABLE a chosen number of times, then OK; the client is
the channel every service (kit.clients.channel) and the gateway (channel_options) use.
Retry throttling is shared per server address, so each case gets a server of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2

from kit import clients

READ = "/dmp.notify.v1.NotifyService/GetContactPreferences"
MUTATION = "/dmp.notify.v1.NotifyService/SendOneTimeCode"
OTHER = "/grpc.health.v1.Health/Check"


class _Flaky(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method: UNAVAILABLE for the first `failures` attempts, then the request back."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.attempts += 1
            if self.attempts <= self.failures:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            return request

        return grpc.unary_unary_rpc_method_handler(answer)


@asynccontextmanager
async def _serve(failures: int) -> AsyncIterator[tuple[grpc.aio.Channel, _Flaky]]:
    handler = _Flaky(failures)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = clients.channel(f"127.0.0.1:{port}")
    try:
        yield channel, handler
    finally:
        await channel.close()
        await server.stop(None)


@pytest.mark.parametrize("path", [READ, MUTATION])
async def test_unavailable_is_retried_on_reads_and_request_id_methods(path: str) -> None:
    async with _serve(failures=clients.MAX_ATTEMPTS - 1) as (channel, handler):
        answer = await channel.unary_unary(path)(b"hello", timeout=10)
        assert answer == b"hello"
        assert handler.attempts == clients.MAX_ATTEMPTS


async def test_attempts_are_bounded() -> None:
    async with _serve(failures=100) as (channel, handler):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(READ)(b"hello", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert handler.attempts == clients.MAX_ATTEMPTS


async def test_a_method_outside_the_policy_is_not_retried() -> None:
    async with _serve(failures=1) as (channel, handler):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(OTHER)(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert handler.attempts == 1


def test_every_platform_method_is_a_read_or_carries_a_request_id() -> None:
    """A new method that is neither would silently lose retries: decide it here first."""
    neither = [
        f"{m.containing_service.name}.{m.name}"
        for m in clients.platform_methods()
        if not clients.retry_safe(m)
    ]
    assert neither == []
    assert not clients.retry_safe(health_pb2.DESCRIPTOR.services_by_name["Health"].methods[0])


def test_service_config_lists_the_methods_with_one_policy() -> None:
    config = json.loads(clients.service_config())
    (entry,) = config["methodConfig"]
    names = {(n["service"], n["method"]) for n in entry["name"]}
    assert ("dmp.records.v1.RecordsService", "GetDocument") in names
    assert ("dmp.records.v1.RecordsService", "CreateDocument") in names
    assert entry["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["retryThrottling"] == clients.RETRY_THROTTLING


def test_one_address_keeps_pick_first_and_several_are_balanced() -> None:
    """round_robin fails calls at once while its only subchannel waits out a reconnect
    backoff after a restart; pick_first reconnects on the next call (tests/faults)."""

    def policy(target: str) -> object:
        options = dict(clients.channel_options(1024, target))
        return json.loads(str(options["grpc.service_config"]))["loadBalancingConfig"]

    assert policy("127.0.0.1:50052") == [{"pick_first": {}}]
    assert policy("") == [{"pick_first": {}}]
    assert policy("ipv4:127.0.0.1:50052,127.0.0.1:50062") == [{"round_robin": {}}]
    assert policy("dns:///records:50052") == [{"round_robin": {}}]
