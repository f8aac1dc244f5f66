"""Last-resort error handler: the outermost step of the gateway.

An exception no other step handled becomes a Chroma-shaped JSON 500 marked as the
gateway's (``X-Chromactl-Origin: gateway``), with a request id that the log line names
too (the client's ``X-Request-Id`` when it sent one). The metrics step, which the
exception passed through, has already counted the request as a 5xx; an exception raised
before it (in the classify step) is counted here. When the answer had already begun the
exception is logged and raised on, and the server drops the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chromactl.gateway.context import REQUEST_ID_HEADER, find_context, request_id
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chromactl.gateway.errors")


class ErrorMiddleware:
    """Turns an unhandled exception into a logged, counted, gateway-marked 500."""

    def __init__(self, app: ASGIApp, on_uncounted: Callable[[Scope, float], None] | None = None) -> None:
        self.app = app
        self.on_uncounted = on_uncounted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            rid = request_id(scope)
            log.exception(
                "unhandled error request_id=%s method=%s path=%s",
                rid,
                scope.get("method"),
                scope.get("path"),
            )
            ctx = find_context(scope)
            if (ctx is None or not ctx.counted) and self.on_uncounted is not None:
                self.on_uncounted(scope, time.perf_counter() - start)
            if started:
                raise
            await send_refusal(send, internal(rid))


def internal(rid: str) -> Refusal:
    """The 500 for an unhandled error, naming the request id that the log line names too."""
    return Refusal(
        500, "InternalError", f"internal error in the gateway (request id {rid})", ((REQUEST_ID_HEADER, rid),)
    )
