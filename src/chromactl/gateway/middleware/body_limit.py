"""Refuse request bodies over the limit with 413, before reading them whole."""

from __future__ import annotations

from chromactl.gateway.context import request_context
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """A declared ``Content-Length`` over the limit is refused at once.

    A body without a length (chunked) is read only up to the limit: over it, 413; under
    it, the body is kept in the request context (``body``) for the next steps.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send) -> None:
        await send_refusal(send, too_large(self.max_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await send_refusal(send, BAD_LENGTH)
                    return
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None and length > self.max_bytes:
            await self._too_large(send)
            return
        if length is None and chunked:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    await self._too_large(send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            request_context(scope).body = b"".join(chunks)

            async def replay() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


#: A ``Content-Length`` that is not a number.
BAD_LENGTH = Refusal(400, "InvalidArgumentError", "bad Content-Length")


def too_large(max_bytes: int) -> Refusal:
    """The answer to a body over ``max_bytes`` (the rest of it is not read: the connection ends)."""
    message = f"request body is larger than {max_bytes} bytes"
    return Refusal(413, "PayloadTooLargeError", message, (("connection", "close"),))
