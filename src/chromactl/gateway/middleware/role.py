"""The role step (high availability): only the primary takes writes.

It runs inside the write hold, so a write that waited through a switchover is asked again
once the hold ends, and is refused on the pod that handed the primary over. A standby, and a
primary that could not renew its lease within the renew deadline (fenced), answer 503 with
``{"error": "NotPrimary"}``, ``Retry-After`` and ``Connection: close``: the client's next try
opens a new connection through the Service, which follows the primary's label (a kept-alive
connection would take it back to this pod).
"""

from __future__ import annotations

from typing import Protocol

from chromactl.gateway.context import find_context
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Route
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class Role(Protocol):
    """What the step asks of this pod's role (``chromactl.ha.node.Node``)."""

    def accepts_writes(self) -> bool: ...

    def refusal(self) -> str: ...


class RoleMiddleware:
    def __init__(self, app: ASGIApp, role: Role) -> None:
        self.app = app
        self.role = role

    def decide(self, route: Route) -> Refusal | None:
        if route.is_write and not self.role.accepts_writes():
            headers = (("retry-after", "1"), ("connection", "close"))
            return Refusal(503, "NotPrimary", self.role.refusal(), headers)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        refusal = self.decide(ctx.route) if ctx is not None else None
        if refusal is not None:
            await send_refusal(send, refusal)
            return
        await self.app(scope, receive, send)
