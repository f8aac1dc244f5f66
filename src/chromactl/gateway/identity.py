"""``GET /api/v2/auth/identity``: answered by the gateway with the caller's identity."""

from __future__ import annotations

from chromactl.gateway.principal import Principal
from chromactl.gateway.responses import send_json
from chromactl.gateway.routes import Operation, Route
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send, state


class IdentityMiddleware:
    """Exactly ``{"user_id", "tenant", "databases"}``, which the Chroma clients expect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            st = state(scope)
            route: Route = st["route"]
            if route.operation is Operation.IDENTITY:
                principal: Principal = st["principal"]
                await send_json(send, 200, principal.identity())
                return
        await self.app(scope, receive, send)
