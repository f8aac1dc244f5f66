"""The audit log: who did what, one JSON line per request that reached an authorization decision.

A line says when, which request (``request_id``: the client's ``X-Request-Id`` or a fresh
one), who (principal name, how it authenticated, its highest role), what (operation, its
class, tenant, database, collection, method and path; ``client_api`` for an old client's
request, translated: ``v1`` or ``v2-0.x``), and how it ended (``allowed`` or
``denied`` with the reason, Chroma's status, records written, bytes in and out,
milliseconds). Never a credential, a document, an embedding or a query: nothing from a
request body but the number of ids in a write and the name of a collection created.

Admin operations and writes are always audited; reads when ``gateway.audit.reads`` is on.
Lines go to standard output (the gateway's own logs go to standard error), or to a file
rotated by size. Every decision is counted in ``chromactl_gateway_audit_events_total``. The
audit step (:mod:`chromactl.gateway.middleware.audit`) writes the lines.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import sys
import time
from typing import Any

from chromactl.config import AuditSettings
from chromactl.gateway.context import CLIENT_API_KEY, VIA_KEY, RequestContext, request_id
from chromactl.gateway.principal import Principal, Role
from chromactl.gateway.routes import Route
from chromactl.gateway.types import Scope
from chromactl.logging import JsonFormatter

#: The logger name the lines carry (what log shippers route on).
AUDIT_LOGGER = "chromactl.audit"
#: Lines a process keeps in memory for the console.
RECENT_LINES = 1000
_CLASSES = {Role.READER: "read", Role.WRITER: "write", Role.ADMIN: "admin"}


def _created_name(body: bytes) -> str:
    """The name a create-collection body asks for (the only body field an audit line takes)."""
    try:
        name = json.loads(body).get("name", "")
    except (ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


def audit_class(route: Route) -> str:
    """``read``, ``write`` or ``admin``: the role the route needs."""
    return _CLASSES[route.needed_role]


def _role(principal: Principal) -> str:
    roles = [g.role for g in principal.grants]
    return max(roles).name.lower() if roles else ""


class AuditLog:
    """Where the lines go: a logger of its own (not chromactl's), JSON whatever ``log.format`` says."""

    def __init__(self, settings: AuditSettings, *, file_suffix: str = "") -> None:
        self.settings = settings
        self.logger = logging.Logger(AUDIT_LOGGER)
        handler: logging.Handler
        if settings.file is not None:
            path = settings.file.with_name(settings.file.name + file_suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
            )
        else:
            handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        self.logger.addHandler(handler)
        #: This process's latest lines (when written, fields), newest last: the console's audit
        #: page without a file. Formatted only when read (:meth:`recent_lines`).
        self.recent: collections.deque[tuple[float, dict[str, Any]]] = collections.deque(maxlen=RECENT_LINES)

    def wants(self, klass: str) -> bool:
        return self.settings.enabled and (klass != "read" or self.settings.reads)

    def write(self, fields: dict[str, Any]) -> None:
        self.logger.info("audit", extra=fields)
        self.recent.append((time.time(), fields))

    def recent_lines(self) -> list[dict[str, Any]]:
        """The kept lines as the log has them, with their ``time``."""
        return [
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z", **f}
            for t, f in self.recent
        ]

    def close(self) -> None:
        for handler in self.logger.handlers:
            handler.close()


def audit_fields(scope: Scope, ctx: RequestContext, body: bytes = b"") -> dict[str, Any]:
    """The line for one decided request (see the module doc); ``body``: a create-collection
    request's body, for the name."""
    route, principal, outcome = ctx.route, ctx.principal, ctx.outcome
    client = scope.get("client")
    fields: dict[str, Any] = {
        "request_id": request_id(scope),
        "principal": {
            "name": principal.user_id if principal else "",
            "method": principal.method if principal else "",
            "role": _role(principal) if principal else "",
        },
        "operation": str(route.operation),
        "class": audit_class(route),
        "tenant": route.tenant,
        "database": route.database,
        "collection": route.collection or (_created_name(body) if body else ""),
        "method": scope.get("method", ""),
        "path": scope.get("path", ""),
        "client": client[0] if client else "",
        "outcome": "allowed" if ctx.allowed else "denied",
    }
    if CLIENT_API_KEY in scope:
        fields["client_api"] = scope[CLIENT_API_KEY]
    if VIA_KEY in scope:
        fields["via"] = scope[VIA_KEY]
    if not ctx.allowed:
        fields["reason"] = ctx.denied_because
    if outcome is not None:
        fields.update(
            status=outcome.status,
            records=outcome.records,
            request_bytes=outcome.request_bytes,
            response_bytes=outcome.response_bytes,
            duration_ms=round(outcome.seconds * 1000, 3),
        )
    return fields
