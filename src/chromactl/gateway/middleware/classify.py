"""First step of every request: strip the path prefix and classify the route.

Paths with ``.`` or ``..`` segments (also percent-encoded) are refused with 400: the
upstream client normalises them away, so the route the gateway authorized would not be
the route Chroma runs (``DELETE .../collections/..`` would delete the database).
Chroma's names are at least three characters, so no real request has such a segment.
Encoded slashes (``%2F``) are refused too: the gateway classifies the decoded path, Chroma
splits the raw one, so they would see different segments. Chroma's names have no slash.
"""

from __future__ import annotations

from chromactl.gateway.context import SCOPE_KEY, RequestContext
from chromactl.gateway.responses import send_error
from chromactl.gateway.routes import classify
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class ClassifyMiddleware:
    """Makes the request context with its route; requests under ``prefix`` are served as if without it."""

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if _has_dot_segment(path):
            await send_error(send, 400, "InvalidArgumentError", "path segments '.' and '..' are not accepted")
            return
        if b"%2f" in (scope.get("raw_path") or b"").lower():
            await send_error(send, 400, "InvalidArgumentError", "encoded slashes (%2F) are not accepted")
            return
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :] or "/"
            scope["path"] = path
            scope["root_path"] = scope.get("root_path", "") + self.prefix
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = raw[len(self.prefix) :] or b"/"
        scope[SCOPE_KEY] = RequestContext(route=classify(scope["method"], path))
        await self.app(scope, receive, send)


def _has_dot_segment(path: str) -> bool:
    """``path`` is decoded (``%2e%2e`` is ``..`` here)."""
    return any(seg in (".", "..") for seg in path.split("/"))
