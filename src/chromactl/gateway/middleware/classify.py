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
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Route, classify
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class ClassifyMiddleware:
    """Makes the request context with its route; requests under ``prefix`` are served as if without it."""

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    def unprefixed(self, path: str) -> str | None:
        """``path`` without the prefix (None: not under it)."""
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            return path[len(self.prefix) :] or "/"
        return None

    def refusal(self, scope: Scope) -> Refusal | None:
        """The 400 for a path the gateway and Chroma would read differently."""
        if _has_dot_segment(scope["path"]):
            return Refusal(400, "InvalidArgumentError", "path segments '.' and '..' are not accepted")
        if b"%2f" in (scope.get("raw_path") or b"").lower():
            return Refusal(400, "InvalidArgumentError", "encoded slashes (%2F) are not accepted")
        return None

    def prepare(self, scope: Scope, route: Route | None = None) -> RequestContext:
        """Strip the prefix and put the request's context (with its ``route``, classified here
        unless given) in the scope."""
        path: str = scope["path"]
        stripped = self.unprefixed(path)
        if stripped is not None:
            scope["path"] = path = stripped
            scope["root_path"] = scope.get("root_path", "") + self.prefix
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = raw[len(self.prefix) :] or b"/"
        ctx = scope[SCOPE_KEY] = RequestContext(route=route or classify(scope["method"], path))
        return ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await send_refusal(send, refusal)
            return
        self.prepare(scope)
        await self.app(scope, receive, send)


def _has_dot_segment(path: str) -> bool:
    """``path`` is decoded (``%2e%2e`` is ``..`` here)."""
    return ("/." in path or path.startswith(".")) and any(seg in (".", "..") for seg in path.split("/"))
