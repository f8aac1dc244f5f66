"""The gateway's HTTP protocol: uvicorn's httptools protocol with what it lacks.

This is the one module that relies on uvicorn's internals (``HttpToolsProtocol``'s
hooks and attributes, listed and checked by ``tests/gateway/test_protocol.py``).
uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503
over ``limit_concurrency``, but it waits for a request's headers forever and its
httptools parser takes headers of any size. :class:`GatewayHttpProtocol` adds:

- a header deadline (from the connection, or from a request's first byte, to the end
  of its headers: 408 and close) and a header size limit (431 and close);
- a connection limit answered with a Chroma-shaped 503 and ``Retry-After`` (uvicorn's
  ``limit_concurrency`` answers in plain text);
- an answer's head and body in one socket write (:mod:`.coalesce`);
- requests the fast path serves (:mod:`.fastpath`), started once the read that brought
  their head is parsed, so that a body that came with it is there: a read whose decisions
  need no I/O is then served in the callbacks (``FastPath.serve_now``), any other in a task;
- with ``peer_certificates``, the verified client certificate in each request's scope
  (the ASGI ``tls`` extension), for client-certificate authentication;
- one keep-alive timer per connection, re-armed lazily (uvicorn makes and cancels one per
  request);
- a connection left unread for a while after an answer that asks it (a rate limit's 429:
  ``RequestContext.pause_s``), so that a client ignoring ``Retry-After`` waits anyway.

It is configured through :class:`ServerConfig`, uvicorn's ``Config`` with our settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from chromactl.config import ClientLimitsSettings
from chromactl.gateway.auth.client_cert import peer_tls
from chromactl.gateway.coalesce import CoalescingTransport
from chromactl.gateway.context import find_context
from chromactl.gateway.fastpath.cycle import ProxyCycle
from chromactl.gateway.fastpath.handler import FastPath
from chromactl.gateway.responses import ORIGIN_HEADER
from chromactl.gateway.types import Scope

log = logging.getLogger("chromactl.gateway.clients")

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
#: A timer may fire this early (the loop's clock resolution) and still count as on time.
_TIMER_SLACK_S = 0.01
_ERRORS = {408: "RequestTimeoutError", 431: "RequestHeaderFieldsTooLargeError", 503: "ServiceUnavailable"}


class ServerConfig(uvicorn.Config):
    """uvicorn's config serving :class:`GatewayHttpProtocol` with these limits."""

    def __init__(
        self,
        app: Any,
        *,
        client_limits: ClientLimitsSettings,
        peer_certificates: bool = False,
        fast_path: FastPath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, http=GatewayHttpProtocol, **kwargs)
        self.client_limits = client_limits
        self.peer_certificates = peer_certificates
        self.fast_path = fast_path


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with our limits, one write per answer and peer certificates."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServerConfig):
            raise TypeError("GatewayHttpProtocol is served with a ServerConfig")
        self.limits = config.client_limits
        self._peer_certificates = config.peer_certificates
        self._fast = config.fast_path
        self._peer_tls: dict[str, Any] | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        #: Loop time by which the headers must be complete; None while no deadline runs.
        self._header_deadline: float | None = None
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_tail = b""
        #: The cycle whose request is being answered (the one a completed answer belongs to).
        self._answering: RequestResponseCycle | None = None
        #: Resumes reading once a refused connection's pause is over.
        self._unpause_timer: asyncio.TimerHandle | None = None
        #: A fast-path request to start once the read that brought its head is parsed (its
        #: body may have come with it).
        self._starting: ProxyCycle | None = None
        #: Loop time of the last answer while no bytes came since (the keep-alive timeout
        #: runs from it); None while a request is in flight.
        self._idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._peer_certificates:
            self._peer_tls = peer_tls(transport)
        super().connection_made(transport)
        # Answers go out through this: head and body in one write.
        self._coalescing = CoalescingTransport(transport, self.loop)
        # A connection that never sends a request is closed too.
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if self._unpause_timer is not None:
            self._unpause_timer.cancel()
            self._unpause_timer = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._coalescing.flush()
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        self._coalescing.flush()
        super().timeout_keep_alive_handler()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            if self._header_deadline is None:
                self._start_header_deadline()
            # Only the bytes up to the blank line that ends the headers count: a body often
            # arrives in the same read, and its size is the body limit's business.
            seen = self._header_tail + data if self._header_tail else data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(end + 4 - len(self._header_tail), 0)
            self._header_tail = seen[-3:]
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, "request headers are larger than the gateway accepts")
                return
        super().data_received(data)
        cycle, self._starting = self._starting, None
        if cycle is not None and not self.transport.is_closing():
            self._start_asgi_task(cycle, self.app)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer_tls is not None:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions["tls"] = self._peer_tls

    def on_headers_complete(self) -> None:
        # The timer stays armed; when it fires without a deadline it just ends (one timer
        # per header_timeout_s per connection, not an arm and a cancel per request).
        self._header_deadline = None
        self._awaiting_headers = False
        self._header_bytes = 0
        self._header_tail = b""
        limit = self.limits.max_connections
        if len(self.connections) > limit or len(self.tasks) >= limit:
            # uvicorn's own answer here is a plain-text 503 without Retry-After.
            self._refuse(503, "the gateway has too many open connections; retry shortly")
            return
        if self._fast is not None and not self.parser.should_upgrade() and self._serve_fast(self._fast):
            return
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = self._coalescing  # type: ignore[assignment]

    def _serve_fast(self, fast: FastPath) -> bool:
        """Start (or queue behind the one in flight) a :class:`ProxyCycle` when the fast path
        serves this request, as uvicorn's ``on_headers_complete`` starts an ASGI cycle."""
        method = self.parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        route = fast.route_for(method, path, self.headers)
        if route is None:
            return False
        scope = self.scope
        scope["method"] = method
        http_version = self.parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""
        existing = self.cycle
        self.cycle = ProxyCycle(
            fast,
            route,
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._starting = self.cycle
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))
        return True

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._answering = cycle
        if isinstance(cycle, ProxyCycle) and cycle.fast.serve_now(cycle):
            return
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        # The next request's header deadline starts with its first byte (data_received);
        # until then the keep-alive timeout applies.
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_tail = b""
        answered = self._answering
        ctx = find_context(cast(Scope, answered.scope)) if answered is not None else None
        # uvicorn's, with the keep-alive timer armed once and re-armed lazily (not a timer
        # made and cancelled per request).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_at(
                    self._idle_since + self.timeout_keep_alive, self._keep_alive_expired
                )
        if ctx is not None and ctx.pause_s > 0 and not self.transport.is_closing():
            self._pause_reading(ctx.pause_s)

    def _unset_keepalive_if_required(self) -> None:
        # Bytes came: the connection is not idle (the armed timer finds that when it fires).
        self._idle_since = None

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        idle = self._idle_since
        if idle is None:
            return  # busy since: the next answer arms the timer again
        due = idle + self.timeout_keep_alive
        if due - self.loop.time() > _TIMER_SLACK_S:
            # Idle again since a later answer: wait for that one's timeout.
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_expired)
            return
        self.timeout_keep_alive_handler()

    def _pause_reading(self, seconds: float) -> None:
        """Leave the connection unread for ``seconds`` (what the client sends meanwhile waits
        in the socket; the keep-alive timeout still runs)."""
        self.flow.pause_reading()
        if self._unpause_timer is not None:
            self._unpause_timer.cancel()
        self._unpause_timer = self.loop.call_later(seconds, self._unpause)

    def _unpause(self) -> None:
        self._unpause_timer = None
        if not self.transport.is_closing() and not self.pipeline:
            self.flow.resume_reading()

    def _start_header_deadline(self) -> None:
        self._header_deadline = self.loop.time() + self.limits.header_timeout_s
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._header_deadline, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        self._header_deadline = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None or not self._awaiting_headers:
            return
        if deadline - self.loop.time() > _TIMER_SLACK_S:
            # A later request's deadline: wait for that one.
            self._header_timer = self.loop.call_at(deadline, self._header_timeout)
            return
        self._header_deadline = None
        if not self.transport.is_closing():
            if self._header_bytes:
                self._refuse(408, "request headers did not arrive in time")
            else:
                self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer with a Chroma-shaped error and close (the parser state is not reusable)."""
        self._cancel_header_timer()
        self._awaiting_headers = False
        self._coalescing.flush()
        log.info(
            "refusing a request", extra={"status": status, "reason": message, "client": _peer(self.client)}
        )
        body = json.dumps({"error": _ERRORS[status], "message": message}, separators=(",", ":")).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        if status == 503:
            head += b"retry-after: 1\r\n"
        head += ORIGIN_HEADER.encode() + b": gateway\r\nconnection: close\r\n\r\n"
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else ""
