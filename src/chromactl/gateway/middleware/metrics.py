"""The metrics step: counts, sizes and times every request (:mod:`chromactl.gateway.request_metrics`)."""

from __future__ import annotations

import time

from chromactl.gateway.context import Outcome, request_context
from chromactl.gateway.request_metrics import GatewayMetrics, count_ids
from chromactl.gateway.routes import RECORD_WRITES, Operation
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

#: Records are counted from the ``ids`` array within this many leading bytes of the body.
IDS_PREFIX_BYTES = 4 * 1024 * 1024


class MetricsMiddleware:
    """Counts, sizes and times every request by the route of its context (set by the classify step)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        ctx = request_context(scope)
        route = ctx.route
        op = route.operation if route is not None else Operation.UNKNOWN
        status = 500
        sent = 0
        received = 0
        head: list[bytes] | None = [] if op in RECORD_WRITES else None
        head_size = 0

        async def counting_receive() -> Message:
            nonlocal received, head_size
            message = await receive()
            body = message.get("body")
            if body:
                received += len(body)
                if head is not None and head_size < IDS_PREFIX_BYTES:
                    head.append(body)
                    head_size += len(body)
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            metrics.in_flight.dec()
            ctx.counted = True
            outcome = ctx.outcome = Outcome(
                status,
                time.perf_counter() - start,
                received,
                sent,
                count_ids(b"".join(head)) if head else None,
            )
            metrics.observe(
                route,
                status,
                seconds=outcome.seconds,
                request_bytes=received,
                response_bytes=sent,
                authorized=ctx.principal is not None and status != 401 and status != 403,
                records=outcome.records,
            )
