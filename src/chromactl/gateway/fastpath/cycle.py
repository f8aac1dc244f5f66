"""One request on the fast path, as the HTTP protocol sees it: uvicorn's request-response cycle
(the protocol feeds it the body, pipelines, drains and closes it as any other), run by
:class:`~chromactl.gateway.fastpath.handler.FastPath` instead of an ASGI app.

The body is read straight from what the protocol parsed; the answer is written to the
transport as bytes: a refusal whole, Chroma's answer as it arrives (:class:`Answer`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from chromactl.gateway.context import RequestContext
from chromactl.gateway.middleware.body_timeout import RequestBodyTimeout
from chromactl.gateway.proxy import HOP_BY_HOP
from chromactl.gateway.responses import Refusal
from chromactl.gateway.routes import Route

if TYPE_CHECKING:
    from chromactl.gateway.fastpath.handler import FastPath
    from chromactl.gateway.fastpath.upstream import UpstreamConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ProxyCycle(RequestResponseCycle):
    """A request the fast path serves (``route``: its classification, made from the head)."""

    def __init__(self, fast: FastPath, route: Route, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast = fast
        self.route = route
        #: Body bytes read from the client, and answer bytes written to it.
        self.received = 0
        self.sent = 0
        self.status = 0
        #: The request's context, once the fast path prepared it (a task takes it over from
        #: :meth:`FastPath.serve_now` as it is).
        self.ctx: RequestContext | None = None

    async def run_asgi(self, app: Any) -> None:
        try:
            await self.fast.handle(self)
        finally:
            self.on_response = lambda: None

    # -- the request body -------------------------------------------------------------------

    def continue_if_expected(self) -> None:
        """``Expect: 100-continue``: the client may send its body now."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
        self.waiting_for_100_continue = False

    async def read(self, deadline: float, timeout_s: float) -> bytes | None:
        """The next piece of the body; None once it ended. Each wait is bounded by
        ``timeout_s`` and by the monotonic ``deadline`` (:class:`RequestBodyTimeout`)."""
        self.continue_if_expected()
        while True:
            if self.body:
                chunk = bytes(self.body)
                self.body.clear()
                self.received += len(chunk)
                return chunk
            if not self.more_body or self.disconnected:
                return None
            self.flow.resume_reading()
            wait = min(timeout_s, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    await self.message_event.wait()
            except TimeoutError:
                raise RequestBodyTimeout("the request body did not arrive in time") from None
            self.message_event.clear()

    async def read_all(self, deadline: float, timeout_s: float) -> bytes:
        chunks = []
        while (chunk := await self.read(deadline, timeout_s)) is not None:
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the answer ---------------------------------------------------------------------------

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole answer the gateway makes itself, in one write."""
        self.waiting_for_100_continue = False
        closes = any(n == b"connection" and v.lower() == b"close" for n, v in headers)
        if closes:
            self.keep_alive = False
        self._start(status, headers, close_header=not closes)
        self._write_and_end([self._head_bytes, body])

    def refuse(self, refusal: Refusal) -> int:
        body = refusal.body()
        self.respond(refusal.status, refusal.raw_headers(body), body)
        return refusal.status

    def _start(self, status: int, headers: list[tuple[bytes, bytes]], close_header: bool) -> None:
        self.response_started = True
        self.status = status
        parts = [STATUS_LINE[status]]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive and close_header:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self._head_bytes = b"".join(parts)

    def _write_and_end(self, parts: list[bytes]) -> None:
        data = b"".join(parts)
        self.sent += len(data) - len(self._head_bytes)
        if not self.disconnected:
            self.transport.write(data)
        self.end()

    def end(self) -> None:
        """The answer is complete: the connection goes on to its next request, or closes."""
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive and not self.transport.is_closing():
            self.transport.close()
        self.on_response()

    def abort(self) -> None:
        """An answer that cannot be finished: the client sees the connection end."""
        self.keep_alive = False
        self.response_complete = True
        self.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()


class Answer:
    """Chroma's answer on its way to the client (the :class:`~.upstream.Sink` of an exchange):
    hop-by-hop headers dropped, the body passed as it comes, re-chunked only when Chroma sent
    no length. What one read of Chroma's socket brought goes out in one write."""

    def __init__(
        self,
        cycle: ProxyCycle,
        conn: UpstreamConnection,
        *,
        held: bool = False,
        on_status: Callable[[int], None] | None = None,
    ) -> None:
        self.cycle = cycle
        self.conn = conn
        #: Told Chroma's status before any of the answer goes out (the resolver forgets then).
        self.on_status = on_status
        self._out: list[bytes] = []
        self._chunked = False
        self.started = False
        #: Held until :meth:`release` (a journaled write: out only once it is journaled).
        self.held = held
        self._body: list[bytes] = []

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.on_status is not None:
            self.on_status(status)
        cycle = self.cycle
        out: list[tuple[bytes, bytes]] = []
        length = False
        for raw, value in headers:
            name = raw.lower()
            if name == b"content-length":
                length = True
            if name not in HOP_BY_HOP:
                out.append((name, value))
        bodiless = status in (204, 304) or status < 200
        if not length and not bodiless:
            if cycle.scope.get("http_version") == "1.0":
                cycle.keep_alive = False  # the end of the body is the end of the connection
            else:
                self._chunked = True
                out.append((b"transfer-encoding", b"chunked"))
        cycle._start(status, out, close_header=True)
        self._out.append(cycle._head_bytes)
        self.started = True

    def body(self, chunk: bytes) -> None:
        self.cycle.sent += len(chunk)
        if self.held:
            self._body.append(chunk)
        if self._chunked:
            self._out += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self._out.append(chunk)

    def whole_body(self) -> bytes:
        """The body of a held answer."""
        return b"".join(self._body)

    def release(self) -> None:
        """A held answer goes out."""
        self.held = False
        self.flush()

    def flush(self) -> None:
        if not self._out or self.held:
            return
        data = b"".join(self._out)
        self._out.clear()
        cycle = self.cycle
        if cycle.disconnected:
            return
        cycle.transport.write(data)
        if cycle.flow.write_paused and self.conn.transport is not None:
            # The client reads slower than Chroma answers: stop reading Chroma until it caught up.
            self.conn.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        await self.cycle.flow.drain()
        if self.conn.transport is not None and not self.conn.closed:
            self.conn.transport.resume_reading()

    def finish(self) -> None:
        if self._chunked and not self.cycle.disconnected:
            self.cycle.transport.write(b"0\r\n\r\n")
        self.cycle.end()
