"""Prometheus metrics of the gateway's requests, served on their own port.

Per request: counts by operation, tenant, database and status class; latency, request
and response sizes by operation; records per write; requests in flight. Security:
authentication failures by reason, authorization denials by reason and operation,
collection ids refused for another tenant/database, 413 rejections. Chroma's
internals (read from its data directory) live in :mod:`chromactl.gateway.chroma_metrics`; the
metrics step (:mod:`chromactl.gateway.middleware.metrics`) measures each request.

Every label that carries a client-chosen name is bounded (:mod:`chromactl.gateway.labels`).
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chromactl.gateway.context import find_context
from chromactl.gateway.labels import LabelCap
from chromactl.gateway.routes import Operation, Route
from chromactl.gateway.types import Scope

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Coarser latency buckets for the per-database histogram (fewer series per database).
DATABASE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 2.5, 10)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
RECORD_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10000, 50000)
#: The limits of ``gateway.limits`` a request can be refused over (label ``limit``).
LIMITS = (
    "requests_per_second",
    "concurrent_requests",
    "records_per_minute",
    "max_collections",
    "max_records_per_collection",
)
#: Default caps (``gateway.metrics`` in the config).
DEFAULT_DATABASE_SERIES = 20


class GatewayMetrics:
    """The gateway's metrics in one registry (one per gateway, so tests stay apart)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        database_series: int = DEFAULT_DATABASE_SERIES,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "chromactl_gateway_requests",
            "Requests answered, by Chroma operation, tenant, database and status class.",
            ["operation", "tenant", "database", "status_class"],
            registry=r,
        )
        self.latency = Histogram(
            "chromactl_gateway_request_duration_seconds",
            "Time from request to the end of the answer, by operation.",
            ["operation"],
            buckets=BUCKETS,
            registry=r,
        )
        self.database_latency = Histogram(
            "chromactl_gateway_database_request_duration_seconds",
            "Time from request to the end of the answer, by tenant and database (coarse buckets).",
            ["tenant", "database"],
            buckets=DATABASE_BUCKETS,
            registry=r,
        )
        self.request_size = Histogram(
            "chromactl_gateway_request_size_bytes",
            "Request body size, by operation.",
            ["operation"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.response_size = Histogram(
            "chromactl_gateway_response_size_bytes",
            "Response body size, by operation.",
            ["operation"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.write_records = Histogram(
            "chromactl_gateway_write_records",
            "Records per write request (ids in add, upsert, update and delete bodies).",
            ["operation"],
            buckets=RECORD_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "chromactl_gateway_requests_in_flight",
            "Requests being answered.",
            registry=r,
            multiprocess_mode="livesum",  # with several workers: the sum over those alive
        )
        self.auth_failures = Counter(
            "chromactl_gateway_auth_failures",
            "Requests refused with 401, by reason.",
            ["reason"],
            registry=r,
        )
        self.denied = Counter(
            "chromactl_gateway_authorization_denied",
            "Requests refused with 403, by reason and operation.",
            ["reason", "operation"],
            registry=r,
        )
        self.audit_events = Counter(
            "chromactl_gateway_audit_events",
            "Authorization decisions, by class (read, write, admin) and outcome (allowed, denied).",
            ["class", "outcome"],
            registry=r,
        )
        self.limited = Counter(
            "chromactl_gateway_limited_requests",
            "Requests refused over a limit (gateway.limits), by whose rule (credential, tenant) "
            "and which limit.",
            ["scope", "limit"],
            registry=r,
        )
        for scope in ("credential", "tenant"):
            for limit in LIMITS:
                self.limited.labels(scope, limit)
        self.legacy_requests = Counter(
            "chromactl_gateway_legacy_client_requests",
            "Requests of Chroma 0.x clients, translated to 1.x (gateway.legacy_clients), by the API "
            "they speak (v1, v2-0.x) and credential (a configured name, or oidc): who still has "
            "apps to upgrade.",
            ["client_api", "credential"],
            registry=r,
        )
        self.cross_tenant = Counter(
            "chromactl_gateway_cross_tenant_refusals",
            "Requests refused because the collection id is not in the tenant/database of the path.",
            ["operation"],
            registry=r,
        )
        self.rejected = Counter(
            "chromactl_gateway_rejected_requests",
            "Requests refused before Chroma, by reason: payload_too_large (413).",
            ["reason", "operation"],
            registry=r,
        )
        self.database_series = Gauge(
            "chromactl_gateway_database_label_series",
            "Tenant/database pairs with their own label values (the rest count as __other__).",
            registry=r,
            multiprocess_mode="max",  # with several workers: each caps its own
        )
        self.databases = LabelCap(
            database_series, ("__other__", "__other__"), on_admit=self.database_series.set
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        #: (operation, tenant, database, status class) -> the children one request updates;
        #: bounded like the labels (operations x capped databases x status classes).
        self._request_children: dict[tuple[Operation, str, str, str], tuple[Any, Any, Any, Any, Any]] = {}

    # -- hooks called by the other steps -------------------------------------------------
    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def denial(self, reason: str, operation: Operation) -> None:
        self.denied.labels(reason, operation).inc()

    def limited_request(self, scope: str, limit: str) -> None:
        """A request refused over a rate limit or quota."""
        self.limited.labels(scope, limit).inc()

    def audit_event(self, klass: str, outcome: str) -> None:
        self._child(self.audit_events, klass, outcome).inc()

    def cross_tenant_refusal(self, operation: Operation) -> None:
        """A collection id refused for not being in the tenant/database of the path."""
        self.cross_tenant.labels(operation).inc()

    def legacy_request(self, client_api: str, credential: str) -> None:
        """An old client's request, translated."""
        self._child(self.legacy_requests, client_api, credential).inc()

    def unhandled(self, scope: Scope, seconds: float) -> None:
        """Count a request whose exception escaped before the metrics step saw it (as a 500)."""
        ctx = find_context(scope)
        route = ctx.route if ctx is not None else None
        self.observe(
            route, 500, seconds=seconds, request_bytes=0, response_bytes=0, authorized=False, records=None
        )

    # -- per request ---------------------------------------------------------------------
    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(
        self,
        route: Route | None,
        status: int,
        *,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
        authorized: bool,
        records: int | None,
    ) -> None:
        op = route.operation if route is not None else Operation.UNKNOWN
        tenant = database = ""
        if authorized and route is not None and route.tenant:
            tenant, database = self.databases((route.tenant, route.database))
        status_class = _STATUS_CLASS.get(status // 100, "other")
        key = (op, tenant, database, status_class)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = self._labelled(key)
        count, latency, database_latency, request_size, response_size = children
        count.inc()
        latency.observe(seconds)
        if database_latency is not None:
            database_latency.observe(seconds)
        if request_bytes:
            request_size.observe(request_bytes)
        response_size.observe(response_bytes)
        if records is not None and status < 300:
            self._child(self.write_records, op).observe(records)
        if status == 413:
            self._child(self.rejected, "payload_too_large", op).inc()

    def _labelled(self, key: tuple[Operation, str, str, str]) -> tuple[Any, Any, Any, Any, Any]:
        """The labelled children one request updates (looked up once per label set)."""
        op, tenant, database, status_class = key
        return (
            self._child(self.requests, op, tenant, database, status_class),
            self._child(self.latency, op),
            self._child(self.database_latency, tenant, database) if tenant else None,
            self._child(self.request_size, op),
            self._child(self.response_size, op),
        )


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


_DECODER = json.JSONDecoder()


def count_ids(body: bytes) -> int | None:
    """Records in a write body: the length of its top-level ``ids`` array, if found.

    Only the ``ids`` array is decoded (Chroma's clients send it first), never the
    embeddings: the slice decoded grows until the array is complete, so the cost follows
    the size of the ids, not of the vectors.
    """
    at = body.find(b'"ids"')
    if at < 0:
        return None
    colon = body.find(b":", at + 5)
    if colon < 0 or body[at + 5 : colon].strip():
        return None
    start = colon + 1
    size = 4096
    while True:
        chunk = body[start : start + size]
        try:
            value, _ = _DECODER.raw_decode(chunk.decode("utf-8", "replace").lstrip())
        except ValueError:
            if start + size >= len(body):
                return None
            size *= 4
            continue
        return len(value) if isinstance(value, list) else None
