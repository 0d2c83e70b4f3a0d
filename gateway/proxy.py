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

One policy enforcement point: `Gate.admit` takes an `Inbound` (metadata, peer,
client certificate), not a gRPC context, and `Forwarder.unary` is the one
admit-then-forward path of a unary call; the gRPC handler here and the
HTTP/JSON door (`gateway.http`) both call it, and `edge_status` is the one
mapping of a failure to the status the client gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class Inbound:
    """What the edge knows of a call before reading its message, whichever door it came in by.

    `metadata`: the client's headers as gRPC metadata (the JSON door builds it from an
    allow-list of HTTP headers); `peer`: the transport address in gRPC's form
    (`ipv4:203.0.113.7:51234`), the key of the anonymous rate limit; `certificates`: the
    client certificate the TLS stack verified (none on the patient port and the JSON door).
    """

    metadata: Sequence[tuple[str, str | bytes]]
    peer: str
    certificates: Sequence[bytes] = ()

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext) -> Inbound:
        return cls(
            context.invocation_metadata() or (),
            context.peer(),
            context.auth_context().get("x509_pem_cert") or (),
        )


def _forward_metadata(inbound: Inbound) -> tuple[Metadata, Credentials, str | None]:
    """Outgoing metadata, every authorization and user-assertion value and the traceparent of
    the call."""
    out: list[tuple[str, str | bytes]] = []
    found = Credentials([], [])
    for key, value in inbound.metadata:
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
    bucket (`anonymous`, keyed by `client_address(inbound.peer)`), before its
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
        self,
        route: Route,
        inbound: Inbound,
        first_request: bytes,
        check_caller: Callable[[Caller | None], None] | None = None,
    ) -> Metadata:
        """Metadata to forward with the call, or the refusal. `check_caller` sees the verified
        caller before anything else is decided (the JSON door binds its CSRF token to the
        caller's session there)."""
        option = route.option
        if option is None or option.action == 0:
            raise permission_denied("METHOD_NOT_EXPOSED", "This method is not exposed.")
        if option.internal:
            raise permission_denied("INTERNAL_METHOD", "This method is internal to the platform.")
        base, found, traceparent = _forward_metadata(inbound)
        caller: Caller | None = await self.authn.authenticate(
            inbound.certificates, found.authorizations, traceparent, found.assertions
        )
        if check_caller is not None:
            check_caller(caller)
        if caller is None:
            self.anonymous.take(client_address(inbound.peer, self.ipv6_prefix))
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


def edge_status(path: str, exc: BaseException) -> grpc.Status:
    """The status the client gets for a failed call of `path`, whichever door it came by."""
    if isinstance(exc, ServiceError):
        return exc.to_status(DOMAIN)
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        # An upstream CANCELLED is never the client's doing (that cancels this handler):
        # a service shutting down drops calls it had not started. Retry, like UNAVAILABLE.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            log.warning("upstream_unavailable", method=path)
            return ServiceError(
                grpc.StatusCode.UNAVAILABLE,
                "UPSTREAM_UNAVAILABLE",
                "The service is unavailable; retry later.",
            ).to_status(DOMAIN)
        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
            # The details may quote an exception (and its data): logged by the service,
            # never shown to the client; the trace id links the two.
            log.error("upstream_error", method=path, code=code.name)
            return internal_error().to_status(DOMAIN)
        return _Status(code, exc.details() or "", tuple(exc.trailing_metadata() or ()))
    log.error("gateway_error", method=path, error_type=type(exc).__name__, exc_info=exc)
    return internal_error().to_status(DOMAIN)


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    """An upstream status passed on as it came (code, details, trailers with its details)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


class Forwarder:
    """Admission and forwarding of unary calls: the path both doors share.

    One raw-bytes multicallable per unary route, made once at start.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        channels: Mapping[str, grpc.aio.Channel],
        gate: Gate,
        default_deadline_s: float,
    ) -> None:
        self.gate = gate
        self.default_deadline_s = default_deadline_s
        self._unary = {
            path: channels[route.upstream].unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            for path, route in routes.items()
            if not route.client_streaming and not route.server_streaming
        }

    async def unary(
        self,
        route: Route,
        inbound: Inbound,
        request: bytes,
        deadline_s: float | None,
        check_caller: Callable[[Caller | None], None] | None = None,
    ) -> bytes:
        """Admit the call (authentication, rate limit, decision), then forward it; raises
        ServiceError or the upstream's AioRpcError (`edge_status` maps both)."""
        metadata = await self.gate.admit(route, inbound, request, check_caller)
        call = self._unary[route.path](
            request,
            metadata=metadata,
            timeout=self.default_deadline_s if deadline_s is None else max(deadline_s, 0.001),
        )
        try:
            response: bytes = await call
        except asyncio.CancelledError:
            call.cancel()
            raise
        return response


class ProxyHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves every routed method; unknown paths return None (UNIMPLEMENTED)."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        channels: Mapping[str, grpc.aio.Channel],
        forwarder: Forwarder,
    ) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for path, route in routes.items():
            channel = channels[route.upstream]
            self._handlers[path] = self._handler(route, channel, forwarder)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    @staticmethod
    def _handler(  # noqa: PLR0915 - one closure per streaming kind, kept together
        route: Route, channel: grpc.aio.Channel, forwarder: Forwarder
    ) -> grpc.RpcMethodHandler:
        path = route.path
        gate = forwarder.gate
        default_deadline_s = forwarder.default_deadline_s

        def timeout(context: grpc.aio.ServicerContext) -> float:
            remaining = context.time_remaining()
            return default_deadline_s if remaining is None else max(remaining, 0.001)

        async def fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
            await context.abort_with_status(edge_status(path, exc))

        if not route.client_streaming and not route.server_streaming:

            async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                try:
                    return await forwarder.unary(
                        route, Inbound.of(context), request, context.time_remaining()
                    )
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
                    metadata = await gate.admit(route, Inbound.of(context), request)
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
            metadata = await gate.admit(route, Inbound.of(context), first)
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
