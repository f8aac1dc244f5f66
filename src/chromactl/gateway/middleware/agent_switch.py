"""The agent switch: agent API requests, once authorized, go to the agent app; the rest on."""

from __future__ import annotations

from chromactl.gateway.context import find_context
from chromactl.gateway.routes import Access
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class AgentSwitch:
    """Sends agent routes to the agent app, everything else on."""

    def __init__(self, app: ASGIApp, agent: ASGIApp) -> None:
        self.app = app
        self.agent = agent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        route = ctx.route if ctx is not None else None
        if route is not None and route.access is Access.AGENT:
            await self.agent(scope, receive, send)
        else:
            await self.app(scope, receive, send)
