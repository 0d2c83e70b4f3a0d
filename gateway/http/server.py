"""The door's HTTPS server (aiohttp): API routes, browser session routes, the portal's files.

No access log: paths name the INS. Every answer, API, file or error, carries
the same strict security headers (`SECURITY_HEADERS`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.http.door import SECURITY_HEADERS, Door
from gateway.http.openapi import openapi_json
from gateway.http.portal import add_portal
from gateway.http.session_routes import add_session_routes

OPENAPI = "/v1/openapi.json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer, API, file or error, carries the same strict headers."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class RunningDoor:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_door(
    door: Door, host: str, port: int, tls: ssl.SSLContext, portal_dir: Path
) -> RunningDoor:
    """Serve the door on `host:port` (0 = any free port) until `stop()`."""
    app = web.Application(middlewares=[security_headers], client_max_size=door.max_body_bytes)
    add_session_routes(app, door)
    add_portal(app, portal_dir)
    document = openapi_json(door.router.routes)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get(OPENAPI, openapi)
    app.router.add_route("*", "/v1/{tail:.*}", door.api)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=False)
    await site.start()
    bound = int(runner.addresses[0][1])
    return RunningDoor(runner, bound)
