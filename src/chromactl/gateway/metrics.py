"""Prometheus metrics of the gateway, served on their own port."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chromactl.gateway.routes import Route
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send, state

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    """The gateway's metrics in one registry (one per gateway, so tests stay apart)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "chromactl_gateway_requests",
            "Requests answered, by Chroma operation and status class.",
            ["operation", "status_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chromactl_gateway_request_duration_seconds",
            "Time from request to the end of the answer, by operation.",
            ["operation"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "chromactl_gateway_auth_failures",
            "Requests refused with 401, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.denied = Counter(
            "chromactl_gateway_authorization_denied",
            "Requests refused with 403, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "chromactl_gateway_requests_in_flight",
            "Requests being answered.",
            registry=self.registry,
        )

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def denial(self, reason: str) -> None:
        self.denied.labels(reason).inc()


class MetricsMiddleware:
    """Counts and times every request by ``state["route"].operation``."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            route: Route | None = state(scope).get("route")
            op = route.operation if route is not None else "unknown"
            self.metrics.requests.labels(op, f"{status // 100}xx").inc()
            self.metrics.latency.labels(op).observe(time.perf_counter() - start)
