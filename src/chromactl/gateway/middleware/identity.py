"""``GET /api/v2/auth/identity``: answered by the gateway with the caller's identity."""

from __future__ import annotations

from chromactl.gateway.context import request_context
from chromactl.gateway.responses import send_json
from chromactl.gateway.routes import Operation
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class IdentityMiddleware:
    """Exactly ``{"user_id", "tenant", "databases"}``, which the Chroma clients expect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ctx = request_context(scope)
            if ctx.route.operation is Operation.IDENTITY and ctx.principal is not None:
                await send_json(send, 200, ctx.principal.identity())
                return
        await self.app(scope, receive, send)
