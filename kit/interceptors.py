"""Server interceptor: authentication of the signed principal, error mapping, access logs.

It also opens the RPC's server span (continuing the caller's W3C context) and
records its RED metrics (`kit.observe`), once per call, around the handler.

Deny by default: a method without a `dmp.authz.v1` option is refused, an
internal method needs an internal principal, and any non-anonymous method
needs a valid signed principal — even though the gateway checked already.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from dmp.authz.v1 import authz_pb2, principal_pb2
from kit import principal as principals
from kit import targets
from kit.authz import is_infrastructure, method_authz
from kit.context import current_principal, reset_principal, set_principal
from kit.errors import ServiceError, invalid_argument, permission_denied, unauthenticated
from kit.logs import get_logger
from kit.observe import RpcObserver, final_code

log = get_logger("dmp.rpc")

#: Actions whose successful calls log their "rpc" line at DEBUG: the hot reads (a document, a
#: decision). Each of them is audited where it matters (consent's access log holds every
#: decision), and at INFO the line alone cost about a tenth of such a call's CPU. Refusals,
#: errors, every other action and any call slower than `SLOW_CALL_MS` stay at INFO.
QUIET_ACTIONS = frozenset({authz_pb2.ACTION_READ, authz_pb2.ACTION_DECIDE})
SLOW_CALL_MS = 250.0

Handler = Any


def _metadata_value(context: grpc.aio.ServicerContext, key: str) -> bytes | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            value = item.value
            return value if isinstance(value, bytes) else value.encode()
    return None


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every handler of one service process."""

    def __init__(self, service: str, keys: Mapping[str, bytes]) -> None:
        self._service = service
        self._domain = f"{service}.dmp"
        self._keys = dict(keys)
        self._observer = RpcObserver(service)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        path: str = details.method
        if handler is None or is_infrastructure(path):
            return handler
        return self._wrap(handler, path, method_authz(path))

    def authenticate(
        self,
        path: str,
        option: authz_pb2.MethodAuthz | None,
        context: grpc.aio.ServicerContext,
    ) -> principal_pb2.Principal | None:
        if option is None or option.action == authz_pb2.ACTION_UNSPECIFIED:
            raise permission_denied("METHOD_NOT_ANNOTATED", "This method is not exposed.")
        raw = _metadata_value(context, principals.METADATA_KEY)
        principal = principals.verify(raw, self._keys, path) if raw is not None else None
        if option.internal:
            if principal is None or principal.kind != principal_pb2.PRINCIPAL_KIND_INTERNAL:
                raise permission_denied(
                    "INTERNAL_METHOD", "This method is internal to the platform."
                )
        elif principal is None and not option.anonymous:
            raise unauthenticated("UNAUTHENTICATED", "This method needs an authenticated caller.")
        return principal

    async def _fail(self, context: grpc.aio.ServicerContext, path: str, exc: BaseException) -> None:
        if isinstance(exc, ServiceError):
            log.info("rpc_refused", method=path, code=exc.code.name, reason=exc.reason)
            await context.abort_with_status(exc.to_status(self._domain))
        if isinstance(exc, NotImplementedError):
            # Generated base servicers raise it for methods a service does not serve yet.
            missing = ServiceError(
                grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED", "This method is not available."
            )
            await context.abort_with_status(missing.to_status(self._domain))
        # Exception text may carry request content: log the type only.
        log.error("rpc_internal_error", method=path, error_type=type(exc).__name__, exc_info=exc)
        error = ServiceError(grpc.StatusCode.INTERNAL, "INTERNAL", "Internal error.")
        await context.abort_with_status(error.to_status(self._domain))

    def _wrap(self, handler: Handler, path: str, option: authz_pb2.MethodAuthz | None) -> Handler:
        guard = self
        quiet = option is not None and option.action in QUIET_ACTIONS

        async def run_unary(
            inner: Callable[..., Awaitable[Any]], request: Any, context: Any
        ) -> Any:
            started = time.perf_counter()
            rpc = guard._observer.start(path, context.invocation_metadata())
            code = grpc.StatusCode.OK
            structlog.contextvars.bind_contextvars(method=path)
            token = None
            try:
                token = set_principal(guard.authenticate(path, option, context))
                result = await inner(request, context)
                _log_ok(path, started, quiet=quiet)
                return result
            except (grpc.aio.AbortError, asyncio.CancelledError) as exc:
                code = _interrupted(context, exc)
                raise
            except Exception as exc:
                code = _code_of(exc)
                await guard._fail(context, path, exc)
                raise  # unreachable: abort raises
            finally:
                if token is not None:
                    reset_principal(token)
                structlog.contextvars.unbind_contextvars("method")
                guard._observer.finish(rpc, code)

        async def run_stream(
            inner: Callable[..., AsyncIterator[Any]], request: Any, context: Any
        ) -> AsyncIterator[Any]:
            started = time.perf_counter()
            rpc = guard._observer.start(path, context.invocation_metadata())
            code = grpc.StatusCode.OK
            token = None
            try:
                token = set_principal(guard.authenticate(path, option, context))
                async for item in inner(request, context):
                    yield item
                _log_ok(path, started, quiet=quiet)
            except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit) as exc:
                code = _interrupted(context, exc)
                raise
            except Exception as exc:
                code = _code_of(exc)
                await guard._fail(context, path, exc)
                raise
            finally:
                if token is not None:
                    reset_principal(token)
                guard._observer.finish(rpc, code)

        field = tuple(option.record_field.split(".")) if option and option.record_field else ()
        return _rebuild(handler, run_unary, run_stream, field)


def _decode(deser: Callable[[bytes], Any] | None, raw: Any) -> Any:
    """The request message; bytes that do not decode are the caller's error, not ours."""
    if deser is None:
        return raw
    try:
        return deser(raw)
    except DecodeError as exc:
        raise invalid_argument("REQUEST_MALFORMED", "The request cannot be decoded.") from exc


async def _decoded(deser: Callable[[bytes], Any] | None, raw: AsyncIterator[Any]) -> Any:
    async for item in raw:
        yield _decode(deser, item)


def _bound(message: Any, record_field: tuple[str, ...]) -> Any:
    """The request, once the principal is known to be decided for the record it names."""
    if record_field:
        targets.check_binding(current_principal(), record_field, message)
    return message


def _rebuild(
    handler: Handler,
    run_unary: Callable[..., Awaitable[Any]],
    run_stream: Callable[..., AsyncIterator[Any]],
    record_field: tuple[str, ...] = (),
) -> Handler:
    """The same method kind as `handler`, served through `run_unary` / `run_stream`.

    Requests arrive as bytes and are decoded inside the wrapper: gRPC's own
    deserialization failure would answer UNKNOWN with the exception's text;
    here it is INVALID_ARGUMENT REQUEST_MALFORMED, logged and counted like any
    refused call. A unary request is then checked against the principal's binding
    (`kit.targets`): a principal decided for one record opens no other.
    """
    deser, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def decoded_uu(raw: Any, context: Any) -> Any:
            return await inner_uu(_bound(_decode(deser, raw), record_field), context)

        async def unary_unary(request: Any, context: Any) -> Any:
            return await run_unary(decoded_uu, request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, None, ser)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def decoded_su(raw: Any, context: Any) -> Any:
            return await inner_su(_decoded(deser, raw), context)

        async def stream_unary(request_iterator: Any, context: Any) -> Any:
            return await run_unary(decoded_su, request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, None, ser)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        def decoded_us(raw: Any, context: Any) -> AsyncIterator[Any]:
            message = _bound(_decode(deser, raw), record_field)
            return inner_us(message, context)  # type: ignore[no-any-return]

        def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            return run_stream(decoded_us, request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, ser)
    inner_ss = handler.stream_stream

    def decoded_ss(raw: Any, context: Any) -> AsyncIterator[Any]:
        return inner_ss(_decoded(deser, raw), context)  # type: ignore[no-any-return]

    def stream_stream(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        return run_stream(decoded_ss, request_iterator, context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, None, ser)


def _interrupted(context: grpc.aio.ServicerContext, exc: BaseException) -> grpc.StatusCode:
    """Status of a call the handler aborted (its abort code) or that was cancelled."""
    if isinstance(exc, grpc.aio.AbortError):
        return final_code(context, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.CANCELLED


def _code_of(exc: BaseException) -> grpc.StatusCode:
    """The status `_fail` answers `exc` with."""
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL


def _log_ok(path: str, started: float, *, quiet: bool) -> None:
    ms = _ms(started)
    if quiet and ms < SLOW_CALL_MS:
        log.debug("rpc", method=path, code="OK", ms=ms)
    else:
        log.info("rpc", method=path, code="OK", ms=ms)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
