"""The fast path's decisions: the gateway's steps, called in their order, without ASGI.

Each decision is the step's own (``decide``/``admit``/``refusal``: one code path for both
paths); only the plumbing differs. In the order of :func:`chromactl.gateway.app.build_gateway`::

    classify -> [audit, metrics around the rest] -> body limit -> authentication
      -> authorization -> [limits] -> write hold -> [role] -> forward to Chroma

:meth:`FastPath.route_for` says, from a request's head, whether the request is served here
or by the ASGI app (the table in :mod:`chromactl.gateway.fastpath`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from chromactl.config import LimitRule
from chromactl.gateway.context import Outcome, RequestContext, request_id
from chromactl.gateway.fastpath.cycle import Answer, ProxyCycle
from chromactl.gateway.fastpath.upstream import RawUpstream, UpstreamConnection
from chromactl.gateway.hold_gate import WriteGate, WritesHeld
from chromactl.gateway.legacy import is_translated
from chromactl.gateway.middleware.audit import NAME_BODY_BYTES, AuditMiddleware
from chromactl.gateway.middleware.authentication import AuthenticationMiddleware
from chromactl.gateway.middleware.authorization import AuthorizationMiddleware
from chromactl.gateway.middleware.body_limit import BAD_LENGTH, too_large
from chromactl.gateway.middleware.body_timeout import TOO_SLOW, RequestBodyTimeout, peer
from chromactl.gateway.middleware.classify import ClassifyMiddleware
from chromactl.gateway.middleware.errors import internal
from chromactl.gateway.middleware.journal import JournalMiddleware, OnAnswer
from chromactl.gateway.middleware.legacy_clients import LegacyClientsMiddleware
from chromactl.gateway.middleware.limits import LimitsMiddleware
from chromactl.gateway.middleware.metrics import IDS_PREFIX_BYTES
from chromactl.gateway.middleware.role import RoleMiddleware
from chromactl.gateway.middleware.write_hold import held
from chromactl.gateway.proxy import _DROP_REQUEST, BUFFER_BELOW, TIMED_OUT, UNREACHABLE
from chromactl.gateway.request_metrics import GatewayMetrics, count_ids
from chromactl.gateway.responses import Refusal
from chromactl.gateway.routes import RECORD_WRITES, Access, Operation, Route, classify
from chromactl.gateway.types import Scope
from chromactl.gateway.upstream import UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("chromactl.gateway.fastpath")

#: Routes the ASGI app keeps whatever the request: answered by the gateway itself, or
#: refused there.
_ASGI_OPERATIONS = frozenset({Operation.IDENTITY, Operation.UNKNOWN, Operation.AGENT, Operation.CONSOLE})
#: Decides on Chroma's whole answer (status, body) before it goes out: None, or a refusal instead.
Settle = Callable[[int, bytes], Awaitable[Refusal | None]]


class FastPath:
    """Serves a :class:`ProxyCycle` with the gateway's steps (their instances, shared with the
    ASGI app) and a pool of raw connections to Chroma."""

    def __init__(
        self,
        upstream: RawUpstream,
        *,
        classifier: ClassifyMiddleware,
        audit: AuditMiddleware,
        metrics: GatewayMetrics,
        max_body_bytes: int,
        body_timeout_s: float,
        body_deadline_s: float,
        authentication: AuthenticationMiddleware,
        authorization: AuthorizationMiddleware,
        limits: LimitsMiddleware | None,
        gate: WriteGate,
        write_wait_s: float,
        role: RoleMiddleware | None,
        journal: JournalMiddleware | None,
        upstream_timeout_s: float,
        scheme: str,
        legacy: LegacyClientsMiddleware | None = None,
    ) -> None:
        self.upstream = upstream
        self.classifier = classifier
        self.audit = audit
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.body_deadline_s = body_deadline_s
        self.authentication = authentication
        self.authorization = authorization
        self.limits = limits
        self.gate = gate
        self.write_wait_s = write_wait_s
        self.role = role
        #: Writes go to the journal (continuous backup, high availability) through its step.
        self.journal = journal
        self.upstream_timeout_s = upstream_timeout_s
        self.scheme = scheme
        #: Old clients' requests are translated by this step, on the ASGI path.
        self.legacy = legacy
        #: Requests :meth:`serve_now` handed to a task (kept until they end).
        self._tasks: set[asyncio.Task[None]] = set()

    # -- which path -------------------------------------------------------------------------

    def route_for(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Route | None:
        """The route when this request is served here; None sends it to the ASGI app."""
        if method == "HEAD":
            return None
        stripped = self.classifier.unprefixed(path)
        route = classify(method, stripped if stripped is not None else path)
        if route.operation in _ASGI_OPERATIONS or route.access is Access.BLOCKED:
            return None
        if route.is_write and self.limits is not None and self.limits.reads_body(route):
            return None  # records_per_minute and the caps: the limits step reads the body
        agent: bytes | None = None
        typed = False
        for name, value in headers:
            if name == b"transfer-encoding":
                return None  # a chunked body is read whole (and bounded) by the body-limit step
            if name == b"user-agent":
                agent = value
            elif name == b"content-type":
                typed = True
        if self.legacy is not None and is_translated(route, agent, typed):
            return None  # an old client's: 0.4's v1, or a 0.5/0.6 one's (0.x's shapes and errors)
        return route

    # -- one request --------------------------------------------------------------------------

    def serve_now(self, cycle: ProxyCycle) -> bool:
        """Serve ``cycle`` from the protocol's callbacks, without a task, when nothing on its
        way needs to wait: a read whose body is all here, whose decisions need no I/O (a
        known token, a cached collection owner) and for which a kept-alive connection to
        Chroma is idle. False (nothing done): :meth:`handle` serves it in a task."""
        route = cycle.route
        if route.is_write or cycle.more_body:
            return False
        scope = cast(Scope, cycle.scope)
        if self.classifier.refusal(scope) is not None:
            return False
        conn = self.upstream.idle()
        if conn is None:
            return False
        ctx = cycle.ctx = self.classifier.prepare(scope, route)
        try:
            refusal = self.authentication.decide_now(scope, ctx)
            if refusal is None:
                refusal = self.authorization.decide_now(scope, ctx)
        except Exception:
            # Later (I/O to wait for), or an error the task meets again and answers with a 500:
            # the task decides from the start, on this context.
            self.upstream.put_back(conn)
            return False
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        taken: list[tuple[str, LimitRule]] = []
        if refusal is None and self.limits is not None and ctx.principal is not None and ctx.allowed:
            taken, refusal = self.limits.admit(ctx)
        if refusal is not None:
            self.upstream.put_back(conn)
            # Answered from the loop, not from here: the answer starts the next pipelined
            # request, whose refusal would start the next one's, as deep as the pipeline is long.
            asyncio.get_running_loop().call_soon(self._refuse, cycle, ctx, start, refusal)
            return True
        body = bytes(cycle.body)
        cycle.body.clear()
        cycle.received = len(body)
        cycle.waiting_for_100_continue = False
        answer = Answer(cycle, conn)
        request = self._head(cycle, len(body)) + body

        def done(exc: Exception | None) -> None:
            try:
                if exc is None:
                    answer.finish()
                elif answer.started:
                    log.warning("Chroma's answer broke off: %s", exc)
                    cycle.abort()
                elif conn.reused and not conn.answered and isinstance(exc, UpstreamUnavailable):
                    # A kept-alive connection Chroma had closed: once more on a new one, in a task.
                    self._again(cycle, ctx, start, body, taken)
                    return
                else:
                    self._unanswered(cycle, exc)
            except Exception:
                self._failed(cycle, ctx)
            self._release(taken)
            self._finished(cycle, ctx, start, b"")

        conn.start(request, answer, conn.loop.time() + self.upstream_timeout_s, done)
        return True

    def _refuse(self, cycle: ProxyCycle, ctx: RequestContext, start: float, refusal: Refusal) -> None:
        cycle.refuse(refusal)
        self._finished(cycle, ctx, start, b"")

    def _again(
        self,
        cycle: ProxyCycle,
        ctx: RequestContext,
        start: float,
        body: bytes,
        taken: list[tuple[str, LimitRule]],
    ) -> None:
        """A request :meth:`serve_now` took whose connection failed before any answer: sent
        once more, on a new connection, in a task."""

        async def again() -> None:
            try:
                await self._forward(cycle, ctx.route, len(body), [], body=body)
            except Exception:
                self._failed(cycle, ctx)
            finally:
                self._release(taken)
                self._finished(cycle, ctx, start, b"")

        task = asyncio.get_running_loop().create_task(again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, cycle: ProxyCycle) -> None:
        scope = cast(Scope, cycle.scope)
        ctx = cycle.ctx
        if ctx is None:
            refusal = self.classifier.refusal(scope)
            if refusal is not None:
                cycle.refuse(refusal)
                return
            ctx = self.classifier.prepare(scope, cycle.route)
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        kept: list[bytes] = []
        try:
            await self._serve(cycle, ctx, kept)
        except RequestBodyTimeout:
            if not cycle.response_started:
                log.info("request body too slow", extra={"client": peer(scope.get("client"))})
                cycle.refuse(TOO_SLOW)
            else:
                cycle.abort()
        except Exception:
            self._failed(cycle, ctx)
        finally:
            self._finished(cycle, ctx, start, b"".join(kept))

    def _failed(self, cycle: ProxyCycle, ctx: RequestContext) -> None:
        """An error of the gateway's own: logged, and a 500 or a broken-off answer."""
        scope = cycle.scope
        rid = request_id(cast(Scope, scope))
        log.exception(
            "unhandled error request_id=%s method=%s path=%s", rid, scope.get("method"), scope.get("path")
        )
        if cycle.response_started:
            cycle.abort()
        else:
            cycle.refuse(internal(rid))

    def _finished(self, cycle: ProxyCycle, ctx: RequestContext, start: float, head: bytes) -> None:
        """The request ended: measured, counted, audited (``head``: the start of its body)."""
        metrics = self.metrics
        metrics.in_flight.dec()
        route = ctx.route
        ctx.counted = True
        ctx.outcome = Outcome(
            cycle.status or 500,
            time.perf_counter() - start,
            cycle.received,
            cycle.sent,
            count_ids(head) if route.operation in RECORD_WRITES and head else None,
        )
        metrics.observe(
            route,
            ctx.outcome.status,
            seconds=ctx.outcome.seconds,
            request_bytes=cycle.received,
            response_bytes=cycle.sent,
            authorized=ctx.principal is not None and cycle.status not in (401, 403),
            records=ctx.outcome.records,
        )
        self.audit.finish(
            cast(Scope, cycle.scope),
            ctx,
            head[:NAME_BODY_BYTES] if route.operation is Operation.CREATE_COLLECTION else b"",
        )

    def _unanswered(self, cycle: ProxyCycle, exc: Exception) -> None:
        """Chroma gave no answer: 504 when it took too long, 502 when it could not be reached."""
        if isinstance(exc, UpstreamTimeout):
            cycle.refuse(TIMED_OUT)
        else:
            log.warning("Chroma is not reachable: %s", exc)
            cycle.refuse(UNREACHABLE)

    def _release(self, taken: list[tuple[str, LimitRule]]) -> None:
        if taken and self.limits is not None:
            self.limits.release(taken)

    async def _serve(self, cycle: ProxyCycle, ctx: RequestContext, kept: list[bytes]) -> None:
        scope = cast(Scope, cycle.scope)
        length = 0
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    cycle.refuse(BAD_LENGTH)
                    return
        if length > self.max_body_bytes:
            cycle.refuse(too_large(self.max_body_bytes))
            return
        refusal = await self.authentication.decide(scope, ctx)
        if refusal is None:
            refusal = await self.authorization.decide(scope, ctx)
        if refusal is not None:
            cycle.refuse(refusal)
            return
        taken: list[tuple[str, LimitRule]] = []
        if self.limits is not None and ctx.principal is not None and ctx.allowed:
            taken, refusal = self.limits.admit(ctx)
            if refusal is not None:
                cycle.refuse(refusal)
                return
        try:
            route = ctx.route
            if not route.is_write:
                await self._forward(cycle, route, length, kept)
                return
            try:
                async with self.gate.write(self.write_wait_s):
                    refusal = self.role.decide(route) if self.role is not None else None
                    if refusal is not None:
                        cycle.refuse(refusal)
                        return
                    if self.journal is not None:
                        await self._journaled(cycle, ctx, length, kept, self.journal)
                    else:
                        await self._forward(cycle, route, length, kept)
            except WritesHeld as exc:
                cycle.refuse(held(exc))
        finally:
            self._release(taken)

    # -- forwarding ---------------------------------------------------------------------------

    def _head(self, cycle: ProxyCycle, length: int) -> bytes:
        scope = cycle.scope
        upstream = self.upstream
        target = upstream.prefix + (scope.get("raw_path") or scope["path"].encode())
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        parts = [scope["method"].encode(), b" ", target, b" HTTP/1.1\r\nhost: ", upstream.authority, b"\r\n"]
        for name, value in scope["headers"]:
            if name not in _DROP_REQUEST and name != b"expect":
                parts += (name, b": ", value, b"\r\n")
        client = scope.get("client")
        if client:
            parts += (b"x-forwarded-for: ", client[0].encode(), b"\r\n")
        parts += (b"x-forwarded-proto: ", scope.get("scheme", self.scheme).encode(), b"\r\n")
        parts += (b"content-length: ", str(length).encode(), b"\r\n\r\n")
        return b"".join(parts)

    async def _journaled(
        self,
        cycle: ProxyCycle,
        ctx: RequestContext,
        length: int,
        kept: list[bytes],
        journal: JournalMiddleware,
    ) -> None:
        """A write the journal records: read whole, forwarded under its journal lock, its answer
        held until journaled (and confirmed by a standby with synchronous replication)."""
        scope = cast(Scope, cycle.scope)
        route = ctx.route
        deadline = time.monotonic() + self.body_deadline_s
        body = await cycle.read_all(deadline, self.body_timeout_s) if length else b""
        ctx.body = body
        kept.append(body[:IDS_PREFIX_BYTES])

        async def forward(on_answer: OnAnswer) -> None:
            settled = False

            async def settle(status: int, answer: bytes) -> Refusal | None:
                nonlocal settled
                settled = True
                return await journal.settle(on_answer, status, answer)

            try:
                await self._forward(cycle, route, length, [], body=body, settle=settle)
            finally:
                if not settled:
                    journal.unless_refused(scope, cycle.status or None)

        await journal.journaled(scope, route, body, forward)

    async def _forward(
        self,
        cycle: ProxyCycle,
        route: Route,
        length: int,
        kept: list[bytes],
        *,
        body: bytes | None = None,
        settle: Settle | None = None,
    ) -> None:
        """Forward to Chroma and pass its answer on; with ``settle``, the answer is held until
        ``settle`` (status, body) allowed it (or answered a refusal instead)."""
        deadline = time.monotonic() + self.body_deadline_s
        keep = IDS_PREFIX_BYTES if route.operation in RECORD_WRITES else 0
        if route.operation is Operation.CREATE_COLLECTION:
            keep = NAME_BODY_BYTES

        def forget(status: int) -> None:
            # Before the answer goes out: a client that saw its delete answered finds the
            # collection gone from the resolver too.
            self.authorization.answered(route, status)

        if body is None and length <= BUFFER_BELOW:
            body = await cycle.read_all(deadline, self.body_timeout_s) if length else b""
            if keep:
                kept.append(body[:keep])
        head = self._head(cycle, length)
        for attempt in (1, 2):
            try:
                conn = await self.upstream.connection()
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                self._unanswered(cycle, exc)
                return
            answer = Answer(cycle, conn, held=settle is not None, on_status=forget)
            try:
                await self._exchange(cycle, conn, answer, head, body, deadline, keep, kept)
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                conn.close()
                if answer.started:
                    log.warning("Chroma's answer broke off: %s", exc)
                    cycle.abort()
                    return
                if (
                    attempt == 1
                    and conn.reused
                    and not conn.answered
                    and body is not None
                    and isinstance(exc, UpstreamUnavailable)
                ):
                    continue  # a kept-alive connection Chroma had closed: once more on a new one
                self._unanswered(cycle, exc)
                return
            if settle is not None:
                refusal = await settle(cycle.status, answer.whole_body())
                if refusal is not None:
                    cycle.sent = 0
                    cycle.refuse(refusal)
                    return
                answer.release()
            answer.finish()
            return

    async def _exchange(
        self,
        cycle: ProxyCycle,
        conn: UpstreamConnection,
        answer: Answer,
        head: bytes,
        body: bytes | None,
        deadline: float,
        keep: int,
        kept: list[bytes],
    ) -> None:
        answer_by = conn.loop.time() + self.upstream_timeout_s
        if body is not None:
            conn.start(head + body, answer, answer_by)
        else:
            conn.start(head, answer, answer_by)
            size = 0
            while (chunk := await cycle.read(deadline, self.body_timeout_s)) is not None:
                if size < keep:
                    kept.append(chunk)
                size += len(chunk)
                await conn.write(chunk)
        await conn.answered_whole()
