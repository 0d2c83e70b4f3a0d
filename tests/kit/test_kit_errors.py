"""ServiceError → google.rpc.Status with ErrorInfo, end to end through a real grpc.aio
server started by kit.server.start_app, so the kit interceptor (authz option, signed
principal, error mapping) is on the path exactly as in every service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp_dev.testing.principals import internal, metadata, patient
from kit import principal as principals
from kit.context import require_principal
from kit.errors import error_info, invalid_argument, resource_exhausted
from kit.server import RunningServer, ServiceApp, start_app
from kit.settings import ServiceSettings

SERVICE = "/dmp.notify.v1.NotifyService/"
SEND = SERVICE + "SendOneTimeCode"
GET = SERVICE + "GetContactPreferences"


class _Servicer(notify_pb2_grpc.NotifyServiceServicer):
    """Real generated service (real authz options), behaviour chosen by the request."""

    async def SendOneTimeCode(self, request: Any, context: Any) -> Any:
        if request.code == "bad":
            raise invalid_argument("CODE_MALFORMED", "The code must be 6 digits.", field="code")
        if request.code == "slow":
            raise resource_exhausted("TOO_MANY_CODES", "Wait before asking again.", 1.5)
        if request.code == "boom":
            raise RuntimeError("allergie à la pénicilline")  # must never reach the client
        return notify_pb2.SendOneTimeCodeResponse(delivery_id="d-1")

    async def GetContactPreferences(self, request: Any, context: Any) -> Any:
        return notify_pb2.ContactPreferences(name=require_principal().subject)


class _App(ServiceApp):
    name = "kittest"

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(_Servicer(), server)
        unannotated = grpc.unary_unary_rpc_method_handler(self._echo)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("kittest.Unannotated", {"Echo": unannotated}),)
        )
        return ["dmp.notify.v1.NotifyService"]

    async def _echo(self, request: bytes, context: Any) -> bytes:
        return request


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[RunningServer]:
    running = await start_app(_App(ServiceSettings(grpc_port=0)))
    yield running
    await running.stop(0)


@pytest.fixture(scope="module")
async def stub(server: RunningServer) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield notify_pb2_grpc.NotifyServiceStub(channel)


async def _fails(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def _send(code: str) -> notify_pb2.SendOneTimeCodeRequest:
    return notify_pb2.SendOneTimeCodeRequest(request_id="r", code=code)


async def test_success_with_internal_principal(stub: Any) -> None:
    reply = await stub.SendOneTimeCode(_send("123456"), metadata=metadata(internal(), SEND))
    assert reply.delivery_id == "d-1"


async def test_invalid_argument_carries_error_info_and_field(stub: Any) -> None:
    err = await _fails(stub.SendOneTimeCode(_send("bad"), metadata=metadata(internal(), SEND)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err)
    assert info is not None
    assert (info.reason, info.domain) == ("CODE_MALFORMED", "kittest.dmp")
    status = rpc_status.from_call(err)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    assert bad.field_violations[0].field == "code"


async def test_resource_exhausted_carries_retry_info(stub: Any) -> None:
    err = await _fails(stub.SendOneTimeCode(_send("slow"), metadata=metadata(internal(), SEND)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err).reason == "TOO_MANY_CODES"  # type: ignore[union-attr]
    status = rpc_status.from_call(err)
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))  # type: ignore[union-attr]
    assert retry.retry_delay.ToMilliseconds() == 1500


async def test_unexpected_exception_is_internal_without_its_text(stub: Any) -> None:
    err = await _fails(stub.SendOneTimeCode(_send("boom"), metadata=metadata(internal(), SEND)))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert error_info(err).reason == "INTERNAL"  # type: ignore[union-attr]
    assert "pénicilline" not in (err.details() or "")


@pytest.mark.parametrize("who", [None, "patient"])
async def test_internal_method_refuses_non_internal_callers(stub: Any, who: str | None) -> None:
    md = metadata(patient("1234567890123"), SEND) if who else None
    err = await _fails(stub.SendOneTimeCode(_send("123456"), metadata=md))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "INTERNAL_METHOD"  # type: ignore[union-attr]


async def test_authenticated_method_needs_a_principal(stub: Any) -> None:
    err = await _fails(stub.GetContactPreferences(notify_pb2.GetContactPreferencesRequest()))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "UNAUTHENTICATED"  # type: ignore[union-attr]


async def test_principal_reaches_the_handler(stub: Any) -> None:
    who = patient("1234567890123", subject="p-1")
    reply = await stub.GetContactPreferences(
        notify_pb2.GetContactPreferencesRequest(), metadata=metadata(who, GET)
    )
    assert reply.name == "p-1"


async def test_principal_issued_for_another_method_is_refused(stub: Any) -> None:
    md = metadata(patient("1234567890123"), SERVICE + "ListNotifications")
    err = await _fails(
        stub.GetContactPreferences(notify_pb2.GetContactPreferencesRequest(), metadata=md)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "PRINCIPAL_WRONG_METHOD"  # type: ignore[union-attr]


async def test_principal_signed_with_an_unknown_key_is_refused(stub: Any) -> None:
    md = principals.metadata_for(patient("1234567890123"), GET, "rogue", b"r" * 32)
    err = await _fails(
        stub.GetContactPreferences(notify_pb2.GetContactPreferencesRequest(), metadata=md)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "PRINCIPAL_KEY_UNKNOWN"  # type: ignore[union-attr]


async def test_method_without_authz_option_is_refused(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        echo = channel.unary_unary("/kittest.Unannotated/Echo")
        err = await _fails(echo(b"x", metadata=metadata(internal(), "/kittest.Unannotated/Echo")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "METHOD_NOT_ANNOTATED"  # type: ignore[union-attr]
