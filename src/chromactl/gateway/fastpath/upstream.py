"""Kept-alive HTTP/1.1 connections to Chroma, as asyncio protocols with httptools' response parser.

The fast path writes a request's head and body to a connection and gets Chroma's answer back
through callbacks (:class:`Sink`), in the same loop turn as the bytes arrive: no second HTTP
client, no task per answer. An answer is parsed for its status and framing only; its body
goes on as it came. A connection goes back to the pool only when its answer ended exactly
where the parser said it would (nothing more came after it) and Chroma keeps it alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from chromactl.gateway.upstream import UpstreamTimeout, UpstreamUnavailable

CONNECT_TIMEOUT_S = 5.0
#: How often the pool looks for exchanges past their deadline.
SWEEP_S = 1.0


class Sink(Protocol):
    """Where an answer goes, piece by piece (called from the connection's callbacks)."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def body(self, chunk: bytes) -> None: ...

    def flush(self) -> None:
        """The bytes of one read are through: write what was gathered."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to Chroma; one exchange at a time."""

    def __init__(self, release: Callable[[UpstreamConnection], None], busy: set[UpstreamConnection]) -> None:
        self._release = release
        #: The pool's connections with an exchange in flight (its sweep ends overdue ones).
        self._busy = busy
        self.deadline = 0.0
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._sink: Sink | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._done: asyncio.Future[None] | None = None
        #: Told how the exchange ended (None: whole), for an exchange started with ``on_done``.
        self._on_done: Callable[[Exception | None], None] | None = None
        self._writable: asyncio.Future[None] | None = None
        #: Bytes of the answer seen (nothing yet: a reused connection may be retried).
        self.answered = False
        #: Reused from the pool (a closed idle connection is the usual keep-alive race).
        self.reused = False
        self.closed = False
        self._complete = False
        self._begun = False
        self._keep_alive = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        #: The loop it runs on (looked up once, not per request).
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self._sink is None or self._complete:
            # Bytes nobody asked for: this connection's framing is not to be trusted.
            self._abort(UpstreamUnavailable("Chroma sent bytes after its answer"))
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.complete():
                self._abort(UpstreamUnavailable(f"Chroma's answer could not be parsed: {exc}"))
                return
            # A second answer behind the first: the first stands, the connection goes.
            self._keep_alive = False
        finally:
            if self._sink is not None:
                self._sink.flush()
        if self.complete():
            self._finish()

    def complete(self) -> bool:
        """The answer has ended (the parser said so)."""
        return self._complete

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(UpstreamUnavailable(f"Chroma closed the connection: {exc or 'EOF'}"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._begun:
            raise UpstreamUnavailable("Chroma sent more than one answer")
        self._begun = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._sink is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._sink.head(self._parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        assert self._sink is not None
        self._sink.body(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # -- the exchange -----------------------------------------------------------------------

    def start(
        self,
        head: bytes,
        sink: Sink,
        deadline: float,
        on_done: Callable[[Exception | None], None] | None = None,
    ) -> None:
        """Send a request's head (and a body known whole, appended to it); the answer goes to
        ``sink`` and must have ended by the loop time ``deadline``. Its end is told to
        ``on_done`` (None, or the :class:`UpstreamUnavailable` or :class:`UpstreamTimeout`
        that ended it), called once the connection is back in the pool or closed; without
        it, :meth:`answered_whole` waits for it."""
        assert self.transport is not None
        self._sink, self._headers, self._complete, self.answered = sink, [], False, False
        self._begun = False
        self.deadline = deadline
        self._on_done = on_done
        self._done = None if on_done is not None else self.loop.create_future()
        self._busy.add(self)
        self.transport.write(head)

    async def write(self, chunk: bytes) -> None:
        """More of the request's body; waits while Chroma reads slower than the client sends."""
        assert self.transport is not None
        if self.closed:
            raise UpstreamUnavailable("Chroma closed the connection")
        self.transport.write(chunk)
        if self._writable is not None and not self._writable.done():
            await self._writable

    async def answered_whole(self) -> None:
        """Until the answer has ended (raises :class:`UpstreamUnavailable` when it broke off,
        :class:`UpstreamTimeout` when the pool's sweep found it overdue)."""
        assert self._done is not None
        await self._done

    def overdue(self) -> None:
        """Chroma took longer than the pool's timeout: the exchange ends with a timeout."""
        self._abort(UpstreamTimeout("Chroma did not answer in time"))

    def _finish(self) -> None:
        self._sink = None
        if self._keep_alive and not self.closed:
            self._busy.discard(self)
            self._release(self)
        else:
            self._shut()
        self._ended(None)

    def _abort(self, exc: Exception) -> None:
        self._sink = None
        self._shut()
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        """Tell whoever waits for the exchange how it ended (once)."""
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(exc)
        elif self._done is not None and not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)

    def close(self) -> None:
        self._shut()
        if self._done is not None and not self._done.done():
            self._done.cancel()  # nobody waits for this exchange any more
        self._ended(UpstreamUnavailable("the connection to Chroma was closed"))

    def _shut(self) -> None:
        self.closed = True
        self._busy.discard(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class RawUpstream:
    """A pool of kept-alive connections to one Chroma (``http://host:port``)."""

    def __init__(self, url: str, *, keepalive: int = 64) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the fast path forwards to an http:// URL, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        #: Prepended to every path (a Chroma behind a path prefix).
        self.prefix = parts.path.rstrip("/").encode()
        self.authority = parts.netloc.encode()
        self._keepalive = keepalive
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def _sweep(self) -> None:
        """Once a second: exchanges past their deadline end (one timer for the pool, not one
        per request)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn.overdue()
        self._sweeper = loop.call_later(SWEEP_S, self._sweep)

    def idle(self) -> UpstreamConnection | None:
        """A kept-alive connection from the pool, if one is open."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def connection(self) -> UpstreamConnection:
        return self.idle() or await self.connect()

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(self.put_back, self._busy), self.host, self.port
                )
        except TimeoutError as exc:
            raise UpstreamTimeout("connecting to Chroma timed out") from exc
        except OSError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        return conn

    def put_back(self, conn: UpstreamConnection) -> None:
        """``conn`` is idle again (kept while the pool has room)."""
        if len(self._idle) < self._keepalive:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
