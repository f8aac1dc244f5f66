"""The write-hold step: writes pass through the :class:`WriteGate`."""

from __future__ import annotations

from chromactl.gateway.context import find_context
from chromactl.gateway.hold_gate import WriteGate, WritesHeld
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send


class WriteHoldMiddleware:
    """Writes wait while a hold is on (503 with ``Retry-After`` after ``wait_s``)."""

    def __init__(self, app: ASGIApp, gate: WriteGate, wait_s: float) -> None:
        self.app = app
        self.gate = gate
        self.wait_s = wait_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        route = ctx.route if ctx is not None else None
        if route is None or not route.is_write:
            await self.app(scope, receive, send)
            return
        write = self.gate.write(self.wait_s)
        try:
            await write.__aenter__()
        except WritesHeld as exc:
            await send_refusal(send, held(exc))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            await write.__aexit__(None, None, None)


def held(exc: WritesHeld) -> Refusal:
    """The answer to a write that waited out a hold."""
    return Refusal(503, "ServiceUnavailable", str(exc), (("retry-after", "1"),))
