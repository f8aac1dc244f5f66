"""First step of every request: strip the path prefix and classify the route."""

from __future__ import annotations

from chromactl.gateway.routes import classify
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send, state


class ClassifyMiddleware:
    """Sets ``state["route"]``; requests under ``prefix`` are served as if without it."""

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :] or "/"
            scope["path"] = path
            scope["root_path"] = scope.get("root_path", "") + self.prefix
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = raw[len(self.prefix) :] or b"/"
        state(scope)["route"] = classify(scope["method"], path)
        await self.app(scope, receive, send)
