"""The streaming reverse proxy to Chroma (the innermost app)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from chromactl.gateway.context import request_context
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import Receive, Scope, Send
from chromactl.gateway.upstream import Body, Headers, Upstream, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("chromactl.gateway.proxy")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Request headers not forwarded: hop-by-hop, the host, and the caller's credentials.
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"authorization", b"x-chroma-token", b"content-length"}
#: Bodies up to this size are read before forwarding (faster); larger ones stream.
BUFFER_BELOW = 256 * 1024
#: Chroma did not answer within ``upstream_timeout_s``.
TIMED_OUT = Refusal(504, "GatewayTimeout", "Chroma did not answer in time")
#: Chroma could not be reached (refused, reset, DNS).
UNREACHABLE = Refusal(503, "ServiceUnavailable", "Chroma is not reachable", (("retry-after", "2"),))


class ReverseProxy:
    """Forwards a request to Chroma and streams the answer back."""

    def __init__(self, upstream: Upstream, *, scheme: str = "http") -> None:
        self.upstream = upstream
        self.scheme = scheme

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers: Headers = []
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value)
            if name not in _DROP_REQUEST:
                headers.append((name, value))
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", client[0].encode()))
        headers.append((b"x-forwarded-proto", scope.get("scheme", self.scheme).encode()))
        body: Body
        buffered = request_context(scope).body
        if buffered is not None:
            body = buffered
        elif length is None or length == 0:
            body = b""
        elif length <= BUFFER_BELOW:
            body = await read_body(receive)
        else:
            headers.append((b"content-length", str(length).encode()))
            body = _stream(receive)
        path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string", b"")
        target = path.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")
        try:
            resp = await self.upstream.request(scope["method"], target, headers, body)
        except UpstreamTimeout:
            await send_refusal(send, TIMED_OUT)
            return
        except UpstreamUnavailable as exc:
            log.warning("Chroma is not reachable: %s", exc)
            await send_refusal(send, UNREACHABLE)
            return
        try:
            out: Headers = []
            size: int | None = None
            for raw_name, value in resp.headers:
                name = raw_name.lower()
                if name == b"content-length":
                    size = int(value)
                if name not in HOP_BY_HOP:
                    out.append((name, value))
            if size is not None and size <= BUFFER_BELOW:
                # Most answers: read whole, sent as one body message (no streaming loop).
                content = await resp.read()
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                await send({"type": "http.response.body", "body": content})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.body():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            log.warning("Chroma's answer broke off: %s", exc)
            raise
        finally:
            await resp.aclose()


async def read_body(receive: Receive) -> bytes:
    """A request's whole body (the steps that need it before Chroma does keep it in the
    request context, where this proxy takes it from)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client disconnected")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _stream(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
