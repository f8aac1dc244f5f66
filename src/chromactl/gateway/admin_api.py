"""Agent API routes for the web console's admin pages: the audit log's recent lines and the
limits in force (``chromactl.agentapi.contract``: ``AUDIT``, ``LIMITS``).

Like every agent route they are served once the gateway authorized an admin over every tenant
and database. In a pod with several workers the supervisor serves them: the audit lines then
come from the audit files (``gateway.audit.file``), the refusals from the workers' metrics.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from chromactl import chromadata
from chromactl.agentapi import contract
from chromactl.config import Settings
from chromactl.gateway.audit_log import AuditLog
from chromactl.gateway.limits_rules import RulesFile
from chromactl.gateway.quotas import Quotas

#: The most lines one audit page asks for, and the bytes read from the end of each file.
MAX_LINES = 500
_TAIL_BYTES = 1 << 20
#: Filters a page may set, each matched against one field of a line.
_FILTERS = {
    "principal": lambda line: (line.get("principal") or {}).get("name", ""),
    "operation": lambda line: line.get("operation", ""),
    "outcome": lambda line: line.get("outcome", ""),
    "tenant": lambda line: line.get("tenant", ""),
    "class": lambda line: line.get("class", ""),
}

#: The refusals of each limit so far: ``(scope, name, limit) -> count``.
Refusals = Callable[[], Iterable[tuple[tuple[str, str, str], int]]]


def audit_files(settings: Settings) -> list[Path]:
    """The audit file and each worker's (``file.<slot>``), present ones only."""
    path = settings.gateway.audit.file
    if path is None:
        return []
    found = [path] if path.exists() else []
    found += sorted(p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit() and p.is_file())
    return found


def _tail(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - _TAIL_BYTES))
        data = f.read()
    lines = data.split(b"\n")
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    parsed = []
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            parsed.append(line)
    return parsed


def recent_lines(
    settings: Settings, audit: AuditLog | None, filters: dict[str, str], limit: int
) -> contract.AuditListing:
    files = audit_files(settings)
    if files:
        lines = [line for path in files for line in _tail(path)]
        source = "files: " + ", ".join(str(p) for p in files)
    elif audit is not None:
        lines = audit.recent_lines()
        source = "this gateway process (gateway.audit.file keeps every process's lines)"
    else:
        return {"source": "none: set gateway.audit.file to read the audit log here", "lines": []}
    wanted = {k: v for k, v in filters.items() if k in _FILTERS and v}
    picked = [line for line in lines if all(_FILTERS[k](line) == v for k, v in wanted.items())]
    picked.sort(key=lambda line: str(line.get("time", "")), reverse=True)
    return {"source": source, "lines": picked[:limit]}


def limits_state(settings: Settings, rules: RulesFile | None, refusals: Refusals) -> contract.LimitsState:
    limits = settings.gateway.limits
    current = (rules or RulesFile(limits)).current()

    def fields(rule: Any) -> dict[str, Any]:
        return {k: v for k, v in rule.model_dump().items() if v is not None}

    capped = [t for t, r in current.tenants.items() if r.max_collections is not None and t != "*"]
    counts: dict[str, int] = {}
    database = settings.chroma.persist_path / chromadata.SQLITE_NAME
    if capped and settings.gateway.metrics.data_directory and database.exists():
        quotas = Quotas(database)
        for tenant in capped:
            try:
                counts[tenant] = quotas.collections(tenant)
            except Exception:
                continue
    return {
        "enabled": limits.enabled,
        "credentials": {name: fields(r) for name, r in current.credentials.items()},
        "tenants": {name: fields(r) for name, r in current.tenants.items()},
        "tenant_collections": counts,
        "refusals": [
            {"scope": scope, "name": name, "limit": limit, "refused": n}
            for (scope, name, limit), n in sorted(refusals(), key=lambda item: -item[1])
        ],
    }


def metrics_refusals(registry: CollectorRegistry) -> Refusals:
    """Refusals by scope and limit from the limits counter (without names: the workers' metrics)."""

    def read() -> list[tuple[tuple[str, str, str], int]]:
        found = []
        for family in registry.collect():
            if family.name != "chromactl_gateway_limited_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    found.append(((sample.labels["scope"], "", sample.labels["limit"]), int(sample.value)))
        return found

    return read


def admin_routes(
    settings: Settings,
    *,
    audit: Callable[[], AuditLog | None],
    rules: Callable[[], RulesFile | None],
    refusals: Refusals,
) -> list[BaseRoute]:
    """The routes, reading the gateway's parts when asked (they exist once it is built)."""

    async def audit_route(request: Request) -> JSONResponse:
        try:
            limit = min(max(int(request.query_params.get("limit", "100")), 1), MAX_LINES)
        except ValueError:
            return JSONResponse(
                {"error": "InvalidArgumentError", "message": "limit must be a number"}, status_code=400
            )
        filters = dict(request.query_params)
        listing = await asyncio.to_thread(recent_lines, settings, audit(), filters, limit)
        return JSONResponse(listing)

    async def limits_route(request: Request) -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(limits_state, settings, rules(), refusals))

    return [
        Route(contract.AUDIT, audit_route, methods=["GET"]),
        Route(contract.LIMITS, limits_route, methods=["GET"]),
    ]
