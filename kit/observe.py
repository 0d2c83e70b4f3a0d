"""Server span and RED metrics around one RPC, shared by the services and the gateway.

The span continues the caller's W3C context (metadata `traceparent`) and is
made current for the handler, so outbox rows, logs and upstream calls made by
the handler carry it. Kept to a handful of calls per RPC: the gateway's
latency budget counts every microsecond of it (bench/observability_overhead.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kit.errors import status_code
from kit.metrics import MethodMetrics, RpcMetrics
from kit.tracing import id_only_span, recording, span_context_from_metadata

_SERVER = SpanKind.SERVER
_OK = grpc.StatusCode.OK
_ERROR = Status(StatusCode.ERROR)
# OTel semantic conventions: server errors are these codes; refusals of bad input are not.
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class ActiveRpc:
    """One RPC in progress: its span, the context token, its start time."""

    __slots__ = ("metrics", "span", "started", "token")

    def __init__(
        self, span: trace.Span, token: object, started: float, metrics: MethodMetrics
    ) -> None:
        self.span = span
        self.token = token
        self.started = started
        self.metrics = metrics


class RpcObserver:
    """Spans and metrics of one server process (`service` labels both)."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._metrics = RpcMetrics(service)
        # The scope name tells in-process servers apart (tests); processes have service.name.
        self._tracer = trace.get_tracer(f"dmp.rpc.{service}")
        self._attributes: dict[str, dict[str, str]] = {}

    def start(self, path: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> ActiveRpc:
        parent = span_context_from_metadata(metadata)
        span = self._recorded(path, parent) if recording() else id_only_span(parent)
        token = otel_context.attach(trace.set_span_in_context(span))
        return ActiveRpc(span, token, time.perf_counter(), self._metrics.method(path))

    def _recorded(self, path: str, parent: trace.SpanContext | None) -> trace.Span:
        attributes = self._attributes.get(path)
        if attributes is None:
            service, _, method = path[1:].rpartition("/")
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
            self._attributes[path] = attributes
        context = None
        if parent is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        return self._tracer.start_span(
            path[1:], context=context, kind=_SERVER, attributes=attributes
        )

    @staticmethod
    def finish(rpc: ActiveRpc, code: grpc.StatusCode) -> None:
        rpc.metrics.observe(code, time.perf_counter() - rpc.started)
        span = rpc.span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _SERVER_FAULTS:
                span.set_status(_ERROR)
        span.end()
        otel_context.detach(rpc.token)  # type: ignore[arg-type]


def final_code(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status a handler aborted with (`context.abort*`), else `default`."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return status_code(code, default)
    return default


def instrument(observer: RpcObserver, path: str, handler: grpc.RpcMethodHandler) -> Any:
    """`handler` with a server span and RED metrics around each call (any streaming kind)."""

    async def observed(run: Callable[[], Awaitable[Any]], context: Any) -> Any:
        rpc = observer.start(path, context.invocation_metadata())
        code = _OK
        try:
            return await run()
        except grpc.aio.AbortError:
            code = final_code(context, grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            observer.finish(rpc, code)

    async def observed_stream(items: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        rpc = observer.start(path, context.invocation_metadata())
        code = _OK
        try:
            async for item in items:
                yield item
        except grpc.aio.AbortError:
            code = final_code(context, grpc.StatusCode.UNKNOWN)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            observer.finish(rpc, code)

    ser, deser = handler.response_serializer, handler.request_deserializer
    if handler.unary_unary:
        uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            return await observed(lambda: uu(request, context), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deser, ser)
    if handler.stream_unary:
        su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            return await observed(lambda: su(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deser, ser)
    if handler.unary_stream:
        us = handler.unary_stream

        def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            return observed_stream(us(request, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, deser, ser)
    ss = handler.stream_stream

    def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        return observed_stream(ss(requests, context), context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, deser, ser)


class InstrumentedHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Wraps another generic handler's methods once each (the gateway's routes)."""

    def __init__(self, inner: grpc.GenericRpcHandler, observer: RpcObserver) -> None:
        self._inner = inner
        self._observer = observer
        self._wrapped: dict[str, Any] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        path: str = handler_call_details.method
        found = self._wrapped.get(path)
        if found is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            found = self._wrapped[path] = instrument(self._observer, path, handler)
        return found
