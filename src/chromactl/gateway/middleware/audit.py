"""The audit step: a line in the audit log (:mod:`chromactl.gateway.audit_log`) for each request
that reached an authorization decision."""

from __future__ import annotations

from collections.abc import Callable

from chromactl.gateway.audit_log import AuditLog, audit_class, audit_fields
from chromactl.gateway.context import RequestContext, find_context
from chromactl.gateway.routes import Operation
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

#: A create-collection body is read for its name up to this size.
NAME_BODY_BYTES = 65536


class AuditMiddleware:
    """Writes the audit line of each request the authorization step decided, once it ended
    (placed outside the metrics step, whose measurements the line carries)."""

    def __init__(
        self, app: ASGIApp, log: AuditLog, on_event: Callable[[str, str], None] | None = None
    ) -> None:
        self.app = app
        self.log = log
        self.on_event = on_event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = find_context(scope)
        body: list[bytes] = []
        if ctx is not None and ctx.route.operation is Operation.CREATE_COLLECTION:
            inner = receive

            async def keeping_receive() -> Message:
                message = await inner()
                if sum(map(len, body)) < NAME_BODY_BYTES:
                    body.append(message.get("body", b""))
                return message

            receive = keeping_receive
        try:
            await self.app(scope, receive, send)
        finally:
            if ctx is not None:
                self.finish(scope, ctx, b"".join(body))

    def finish(self, scope: Scope, ctx: RequestContext, body: bytes = b"") -> None:
        """The request ended: its line, when the authorization step decided it (``body``: a
        create-collection request's, for the name)."""
        if ctx.allowed is None:
            return
        klass = audit_class(ctx.route)
        if self.on_event is not None:
            self.on_event(klass, "allowed" if ctx.allowed else "denied")
        if self.log.wants(klass):
            self.log.write(audit_fields(scope, ctx, body))
