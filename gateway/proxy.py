"""The raw-bytes proxy: a GenericRpcHandler forwarding request and response bytes unchanged.

No (de)serializers on either side, one cached multicallable per method, one
channel per upstream created at start. Client metadata is forwarded except
every `dmp-*` key and `authorization`; the signed principal is added. The
client's deadline becomes the upstream deadline; a cancelled client call
cancels the upstream call (the awaiting task is cancelled); `traceparent` is
replaced by the gateway span's own, `tracestate` travels unchanged. An
unreachable upstream is UNAVAILABLE.

Every request message is decoded with its method's request class before it is
forwarded (each message of a client stream too): bytes that are not a valid
message are INVALID_ARGUMENT REQUEST_MALFORMED here, whether the method is
anonymous or not, and never reach a service. A message over
`max_message_bytes` is refused by gRPC itself before any of this code runs:
RESOURCE_EXHAUSTED with gRPC's own text and no ErrorInfo (answering it with a
reason would mean receiving the oversized bytes first). An upstream UNKNOWN
or INTERNAL never reaches the client as is (its text may quote an exception):
it becomes INTERNAL with a generic message and the call's trace id in the
ErrorInfo metadata (`trace_id`), so support can find the logs. Other
upstream statuses pass unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from gateway.assertion import HEADER as ASSERTION
from gateway.authn import Authenticator, Caller
from gateway.authz import Decisions
from gateway.ratelimit import RateLimiter, client_address
from gateway.routing import Route
from kit import principal as principals
from kit import tracing
from kit.errors import ServiceError, invalid_argument, permission_denied, unauthenticated
from kit.logs import get_logger

log = get_logger("dmp.gateway")
DOMAIN = "gateway.dmp"
_DROPPED_PREFIXES = ("dmp-", "authorization", "grpc-", ":")
# The user assertion is the edge's to check; a service never sees it (a bearer credential).
_REPLACED = frozenset({"user-agent", tracing.TRACEPARENT, ASSERTION})
Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class Credentials:
    """What the call presents besides its certificate: bearer tokens, user assertions."""

    authorizations: list[str]
    assertions: list[str]


def _forward_metadata(
    context: grpc.aio.ServicerContext, signed: bytes | None
) -> tuple[Metadata, Credentials, str | None]:
    """Outgoing metadata, every authorization and user-assertion value and the traceparent of
    the call."""
    out: list[tuple[str, str | bytes]] = []
    found = Credentials([], [])
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            found.authorizations.append(value if isinstance(value, str) else value.decode())
        if key == ASSERTION:
            found.assertions.append(value if isinstance(value, str) else value.decode())
        if key.startswith(_DROPPED_PREFIXES) or key in _REPLACED:
            continue
        out.append((key, value))
    # The gateway's server span (kit.observe) continues the client's trace: upstream is its child.
    traceparent = tracing.traceparent()
    if traceparent is not None:
        out.append((tracing.TRACEPARENT, traceparent))
    if signed is not None:
        out.append((principals.METADATA_KEY, signed))
    return tuple(out), found, traceparent


def check_decodes(route: Route, message: bytes) -> None:
    """INVALID_ARGUMENT REQUEST_MALFORMED unless `message` is a valid request of `route`."""
    try:
        route.request_class.FromString(message)
    except DecodeError as exc:
        raise invalid_argument("REQUEST_MALFORMED", "The request cannot be decoded.") from exc


def internal_error() -> ServiceError:
    """INTERNAL with nothing but the trace id: the logs of that trace tell the rest."""
    trace_id = tracing.trace_id()
    return ServiceError(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        "Internal error; quote the trace id to support.",
        metadata={"trace_id": trace_id} if trace_id else None,
    )


class Gate:
    """Authentication, rate limit and authorization of one call.

    An authenticated call spends a token of its caller's bucket (`limiter`); a call
    without a credential, anonymous method or not, one of its client address's
    bucket (`anonymous`, keyed by `client_address(context.peer())`), before its
    request is decoded or anything is sent upstream. Both answer RESOURCE_EXHAUSTED
    RATE_LIMITED with a retry delay.
    """

    def __init__(
        self,
        authn: Authenticator,
        decisions: Decisions,
        limiter: RateLimiter,
        anonymous: RateLimiter,
        *,
        ipv6_prefix: int = 64,
    ) -> None:
        self.authn = authn
        self.decisions = decisions
        self.limiter = limiter
        self.anonymous = anonymous
        self.ipv6_prefix = ipv6_prefix

    async def admit(
        self, route: Route, context: grpc.aio.ServicerContext, first_request: bytes
    ) -> Metadata:
        option = route.option
        if option is None or option.action == 0:
            raise permission_denied("METHOD_NOT_EXPOSED", "This method is not exposed.")
        if option.internal:
            raise permission_denied("INTERNAL_METHOD", "This method is internal to the platform.")
        base, found, traceparent = _forward_metadata(context, None)
        caller: Caller | None = await self.authn.authenticate(
            context, found.authorizations, traceparent, found.assertions
        )
        if caller is None:
            self.anonymous.take(client_address(context.peer(), self.ipv6_prefix))
            if option.anonymous:
                check_decodes(route, first_request)
                return base
            raise unauthenticated("UNAUTHENTICATED", "This method needs an authenticated caller.")
        self.limiter.take(caller.key)
        check_decodes(route, first_request)
        if option.anonymous:
            return base
        signed = await self.decisions.admit(route, caller, first_request, traceparent)
        return (*base, (principals.METADATA_KEY, signed))


class ProxyHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves every routed method; unknown paths return None (UNIMPLEMENTED)."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        channels: Mapping[str, grpc.aio.Channel],
        gate: Gate,
        default_deadline_s: float,
    ) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for path, route in routes.items():
            channel = channels[route.upstream]
            self._handlers[path] = self._handler(route, channel, gate, default_deadline_s)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    @staticmethod
    def _handler(  # noqa: PLR0915 - one closure per streaming kind, kept together
        route: Route, channel: grpc.aio.Channel, gate: Gate, default_deadline_s: float
    ) -> grpc.RpcMethodHandler:
        path = route.path

        def timeout(context: grpc.aio.ServicerContext) -> float:
            remaining = context.time_remaining()
            return default_deadline_s if remaining is None else max(remaining, 0.001)

        async def fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
            if isinstance(exc, ServiceError):
                await context.abort_with_status(exc.to_status(DOMAIN))
            if isinstance(exc, grpc.aio.AioRpcError):
                code = exc.code()
                # An upstream CANCELLED is never the client's doing (that cancels this handler):
                # a service shutting down drops calls it had not started. Retry, like UNAVAILABLE.
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    log.warning("upstream_unavailable", method=path)
                    error = ServiceError(
                        grpc.StatusCode.UNAVAILABLE,
                        "UPSTREAM_UNAVAILABLE",
                        "The service is unavailable; retry later.",
                    )
                    await context.abort_with_status(error.to_status(DOMAIN))
                if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                    # The details may quote an exception (and its data): logged by the service,
                    # never shown to the client; the trace id links the two.
                    error = internal_error()
                    log.error("upstream_error", method=path, code=code.name)
                    await context.abort_with_status(error.to_status(DOMAIN))
                await context.abort(
                    code,
                    exc.details() or "",
                    trailing_metadata=tuple(exc.trailing_metadata() or ()),
                )
            log.error("gateway_error", method=path, error_type=type(exc).__name__, exc_info=exc)
            await context.abort_with_status(internal_error().to_status(DOMAIN))

        if not route.client_streaming and not route.server_streaming:
            uu = channel.unary_unary(path, request_serializer=None, response_deserializer=None)

            async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                try:
                    metadata = await gate.admit(route, context, request)
                    call = uu(request, metadata=metadata, timeout=timeout(context))
                    try:
                        response: bytes = await call
                    except asyncio.CancelledError:
                        call.cancel()
                        raise
                    return response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await fail(context, exc)
                    raise

            return grpc.unary_unary_rpc_method_handler(unary_unary)

        if not route.client_streaming:
            us = channel.unary_stream(path, request_serializer=None, response_deserializer=None)

            async def unary_stream(
                request: bytes, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[bytes]:
                try:
                    metadata = await gate.admit(route, context, request)
                    call = us(request, metadata=metadata, timeout=timeout(context))
                    try:
                        async for item in call:
                            yield item
                    except asyncio.CancelledError:
                        call.cancel()
                        raise
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await fail(context, exc)

            return grpc.unary_stream_rpc_method_handler(unary_stream)

        async def opened(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> tuple[Metadata, ClientStream]:
            # The record is named in the first message; it is forwarded unchanged.
            first = b""
            got_first = False
            async for item in requests:
                first, got_first = item, True
                break
            metadata = await gate.admit(route, context, first)
            return metadata, ClientStream(route, first if got_first else None, requests)

        if not route.server_streaming:
            su = channel.stream_unary(path, request_serializer=None, response_deserializer=None)

            async def stream_unary(
                requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
            ) -> bytes:
                try:
                    metadata, forwarded = await opened(requests, context)
                    call = su(forwarded.messages(), metadata=metadata, timeout=timeout(context))
                    forwarded.call = call
                    try:
                        response: bytes = await call
                    except asyncio.CancelledError:
                        call.cancel()
                        forwarded.raise_error()
                        raise
                    return response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await fail(context, exc)
                    raise

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        ss = channel.stream_stream(path, request_serializer=None, response_deserializer=None)

        async def stream_stream(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            try:
                metadata, forwarded = await opened(requests, context)
                call = ss(forwarded.messages(), metadata=metadata, timeout=timeout(context))
                forwarded.call = call
                try:
                    async for item in call:
                        yield item
                except asyncio.CancelledError:
                    call.cancel()
                    forwarded.raise_error()
                    raise
                forwarded.raise_error()
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await fail(context, exc)

        return grpc.stream_stream_rpc_method_handler(stream_stream)


class ClientStream:
    """The messages of a client stream, forwarded as they come, each decoded first.

    A message that does not decode ends the forwarding and cancels the upstream
    call (so a service never commits a stream cut short by the edge); the call's
    handler then answers the REQUEST_MALFORMED error kept here.
    """

    def __init__(self, route: Route, first: bytes | None, rest: AsyncIterator[bytes]) -> None:
        self._route = route
        self._first = first
        self._rest = rest
        self.call: grpc.aio.Call | None = None
        self.error: ServiceError | None = None

    async def messages(self) -> AsyncIterator[bytes]:
        if self._first is None:
            return
        yield self._first  # decoded by Gate.admit
        async for item in self._rest:
            try:
                check_decodes(self._route, item)
            except ServiceError as exc:
                self.error = exc
                if self.call is not None:
                    self.call.cancel()
                return
            yield item

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error
