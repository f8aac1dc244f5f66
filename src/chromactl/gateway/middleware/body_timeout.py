"""Slow request bodies: every wait for a piece of the body is bounded, and so is the whole body.

Too slow: a Chroma-shaped 408 ``RequestTimeoutError`` and the connection is closed.
(Slow headers are the HTTP server's business: :mod:`chromactl.gateway.protocol`.)
"""

from __future__ import annotations

import asyncio
import logging
import time

from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chromactl.gateway.clients")


#: The answer to a body that did not arrive in time (the connection cannot go on).
TOO_SLOW = Refusal(
    408, "RequestTimeoutError", "the request body did not arrive in time", (("connection", "close"),)
)


def peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""


class RequestBodyTimeout(Exception):
    """The client did not send its body in time."""


async def receive_in_time(receive: Receive, timeout_s: float, deadline: float) -> Message:
    """The next message, waited for ``timeout_s`` at most and not past the monotonic
    ``deadline`` (:class:`RequestBodyTimeout`)."""
    wait = min(timeout_s, deadline - time.monotonic())
    try:
        # A timer on this task, not wait_for's extra task and loop turns per receive.
        async with asyncio.timeout(max(wait, 0.0)):
            return await receive()
    except TimeoutError:
        raise RequestBodyTimeout("the request body did not arrive in time") from None


async def refuse_too_slow(scope: Scope, send: Send) -> None:
    """Answer a body that did not arrive in time (408, the connection closes)."""
    log.info("request body too slow", extra={"client": peer(scope.get("client"))})
    await send_refusal(send, TOO_SLOW)


class BodyTimeoutMiddleware:
    """Bounds each wait for body data and the whole body; too slow: 408 and close."""

    def __init__(self, app: ASGIApp, timeout_s: float, deadline_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False
        body_done = False
        deadline = time.monotonic() + self.deadline_s

        async def guarded_receive() -> Message:
            nonlocal timed_out, body_done
            if body_done:
                return await receive()  # waits for the disconnect: not the client's body
            try:
                message = await receive_in_time(receive, self.timeout_s, deadline)
            except RequestBodyTimeout:
                timed_out = True
                raise
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except Exception:
            if not timed_out:
                raise
            if not started:
                await refuse_too_slow(scope, send)
