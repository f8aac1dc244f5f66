"""The gateway step that hands ``/console`` to the console (before authentication: the console
signs its browsers in itself, and authenticates what it reads through the whole chain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chromactl.gateway.context import request_context
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Operation
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from chromactl.gateway.console.app import Console

_OFF = Refusal(404, "NotFoundError", "the console is off (gateway.console.enabled: false)")


class ConsoleSwitch:
    def __init__(self, app: ASGIApp, console: Console | None) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and request_context(scope).route.operation is Operation.CONSOLE:
            if self.console is None:
                await send_refusal(send, _OFF)
            else:
                await self.console(scope, receive, send)
            return
        await self.app(scope, receive, send)
