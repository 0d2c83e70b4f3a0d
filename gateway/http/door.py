"""The door's API handler: one HTTP request → one call through the gRPC edge's path.

Every API call goes through `Forwarder.unary`, the gRPC edge's own admission
and forwarding: the door only translates. What the door adds is HTTP's own
hygiene: a body limit checked before reading, strict security headers on every
answer, no-store on API answers, CSRF and Origin checks for cookie sessions,
and no access log (paths name the INS): errors are logged with the route
template, never the path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from aiohttp import web

from gateway.authn import Caller
from gateway.http import session as sessions
from gateway.http.rules import HttpRoute, Router
from gateway.http.transcode import build_request, parse_body, response_json, status_json
from gateway.proxy import DOMAIN, Forwarder, Inbound, edge_status
from kit.errors import ServiceError, invalid_argument, not_found, unauthenticated
from kit.logs import get_logger
from kit.observe import RpcObserver

log = get_logger("dmp.gateway.http")
JSON = "application/json"
#: HTTP headers that become gRPC metadata; nothing else a client sends reaches the edge's
#: decision or a service (no `dmp-*`, no `x-forwarded-*`, no cookies).
_FORWARDED_HEADERS = ("traceparent", "tracestate", "x-dmp-user-assertion")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Server": "dmp-gateway",
}


def peer_of(request: web.Request) -> str:
    """The client address in gRPC's peer form, so both doors share rate-limit buckets."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return "unknown"
    host, port = peer[0], peer[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def error_response(status: grpc.Status) -> web.Response:
    http, body = status_json(status)
    return web.Response(
        status=http, body=body, content_type=JSON, headers={"Cache-Control": "no-store"}
    )


def json_response(body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=body, content_type=JSON, headers={"Cache-Control": "no-store", **(headers or {})}
    )


@dataclass
class Door:
    """The door's routes and what they share (one per gateway process)."""

    router: Router
    forwarder: Forwarder
    observer: RpcObserver
    csrf: sessions.CsrfTokens
    max_body_bytes: int

    def route_of(self, method: str) -> HttpRoute:
        return next(r for r in self.router.routes if r.method == method)

    # -- requests -------------------------------------------------------------------

    async def body(self, request: web.Request) -> object:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise body_too_large()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise body_too_large() from exc
        return parse_body(raw)

    def inbound(self, request: web.Request, *, use_cookie: bool = True) -> tuple[Inbound, bool]:
        """The call's metadata and whether its credential is the session cookie."""
        metadata: list[tuple[str, str | bytes]] = []
        for value in request.headers.getall("Authorization", ()):
            metadata.append(("authorization", value))
        cookie = request.cookies.get(sessions.ACCESS_COOKIE) if use_cookie else None
        if cookie:
            metadata.append(("authorization", f"Bearer {cookie}"))
        for name in _FORWARDED_HEADERS:
            for value in request.headers.getall(name, ()):
                metadata.append((name, value))
        return Inbound(tuple(metadata), peer_of(request)), bool(cookie)

    def csrf_check(self, request: web.Request) -> Callable[[Caller | None], None]:
        """The check of a cookie-authenticated state change, run on the verified caller."""
        sessions.check_origin(request.headers, frozenset({f"https://{request.host}"}))
        presented = request.headers.get(sessions.CSRF_HEADER)

        def check(caller: Caller | None) -> None:
            session_id = caller.principal.session_id if caller is not None else ""
            self.csrf.check(presented, session_id)

        return check

    async def call(
        self,
        route: HttpRoute,
        request_bytes: bytes,
        inbound: Inbound,
        check: Callable[[Caller | None], None] | None = None,
    ) -> bytes:
        """One call through the shared path, observed like a gRPC call of the same method."""
        rpc = self.observer.start(route.route.path, inbound.metadata)
        code = grpc.StatusCode.OK
        try:
            return await self.forwarder.unary(route.route, inbound, request_bytes, None, check)
        except ServiceError as exc:
            code = exc.code
            raise
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self.observer.finish(rpc, code)

    # -- handlers -------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        found = self.router.match(request.method, path)
        if found is None:
            if self.router.allows(path):
                error = ServiceError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "HTTP_METHOD_NOT_ALLOWED",
                    "This path takes another HTTP method.",
                )
            else:
                error = not_found("ROUTE_NOT_FOUND", "No such route.")
            return error_response(error.to_status(DOMAIN))
        route, variables = found
        try:
            body = await self.body(request)
            message = build_request(route, variables, request.rel_url.query.items(), body)
            inbound, by_cookie = self.inbound(request)
            check = self.csrf_check(request) if by_cookie and request.method != "GET" else None
            answer = await self.call(route, message.SerializeToString(), inbound, check)
            return json_response(response_json(route.response_class, answer))
        except Exception as exc:
            return self.failure(route.template, route.route.path, exc)

    def failure(self, template: str, method: str, exc: Exception) -> web.Response:
        status = edge_status(method, exc)
        if status.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            log.error("http_call_failed", route=template, code=status.code.name)
        return error_response(status)


def body_too_large() -> ServiceError:
    return ServiceError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "BODY_TOO_LARGE", "The request body is too large."
    )


def session_cookie_required() -> ServiceError:
    return unauthenticated("SESSION_COOKIE_REQUIRED", "No session: log in again.")


def json_object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise invalid_argument("INVALID_REQUEST_FIELDS", "The request body must be a JSON object.")
    return body
