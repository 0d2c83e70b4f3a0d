"""The patient portal's static files at `/portail/` (`GET /` redirects there).

Files only from the portal directory: no listing, no dot-files, no path that
resolves outside it (`..`, symbolic links), content type from the extension.
Pages are revalidated on each visit (`no-cache`) so a new release is seen at once.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

PREFIX = "/portail/"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "portal" / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}


def content_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or ("application/octet-stream")
    )


def add_portal(app: web.Application, directory: Path) -> None:
    root = directory.resolve()

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX)

    async def page(request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        if tail == "" or tail.endswith("/"):
            tail += "index.html"
        parts = tail.split("/")
        if any(part.startswith(".") or part == "" for part in parts):
            raise web.HTTPNotFound()
        target = (root / tail).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            target, headers={"Content-Type": content_type(target), "Cache-Control": "no-cache"}
        )

    app.router.add_get("/", home)
    app.router.add_get("/portail", home)
    app.router.add_get(PREFIX + "{tail:.*}", page)
