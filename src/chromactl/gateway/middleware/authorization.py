"""Authorization: role and scope per request, and collection ids checked against the path."""

from __future__ import annotations

import logging
from collections.abc import Callable

from chromactl.gateway.auth.base import Later
from chromactl.gateway.collection_cache import CollectionResolver
from chromactl.gateway.context import CLIENT_API_KEY, RequestContext, request_context
from chromactl.gateway.proxy import UNREACHABLE
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Access, Operation, Route
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send
from chromactl.gateway.upstream import UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("chromactl.gateway.authz")

#: Operations after which the collection resolver forgets what it cached.
_FORGETTING = frozenset(
    {Operation.DELETE_COLLECTION, Operation.UPDATE_COLLECTION, Operation.DELETE_DATABASE, Operation.RESET}
)


class AuthorizationMiddleware:
    """Answers 403 ``AuthorizationError`` unless the principal may do what the route does."""

    def __init__(
        self,
        app: ASGIApp,
        resolver: CollectionResolver,
        *,
        allow_reset: bool = False,
        on_denied: Callable[[str, Operation], None] | None = None,
        on_cross_tenant: Callable[[Operation], None] | None = None,
    ) -> None:
        self.app = app
        self.resolver = resolver
        self.allow_reset = allow_reset
        self.on_denied = on_denied
        self.on_cross_tenant = on_cross_tenant

    def _deny(self, ctx: RequestContext, reason: str, message: str) -> Refusal:
        ctx.allowed, ctx.denied_because = False, reason
        if self.on_denied is not None:
            self.on_denied(reason, ctx.route.operation)
        return Refusal(403, "AuthorizationError", message)

    def decide_now(self, scope: Scope, ctx: RequestContext) -> Refusal | None:
        """:meth:`decide` without waiting: raises :class:`Later` when the collection's owner is
        not cached (nothing is set or counted then)."""
        route = ctx.route
        if route.access is Access.PUBLIC:
            return None
        principal = ctx.principal
        if principal is None:
            raise RuntimeError("authorization step reached without a principal")
        if route.access is Access.BLOCKED:
            return self._deny(ctx, "blocked", f"{scope['path']} is not served by the gateway")
        if route.operation is Operation.RESET and not self.allow_reset:
            return self._deny(ctx, "reset_disabled", "reset is disabled")
        if CLIENT_API_KEY in scope and not principal.legacy_clients:
            return self._deny(
                ctx,
                "legacy_client",
                f"{principal.user_id or 'this credential'} is set to Chroma 1.x clients only "
                "(legacy_clients: false): upgrade this app's client to chromadb>=1.0",
            )
        if not principal.may(route.needed_role, route.reach, route.tenant, route.database):
            log.info("denied", extra={"user": principal.user_id, "operation": route.operation})
            return self._deny(
                ctx,
                "forbidden",
                f"{principal.user_id or 'caller'} may not {route.operation}"
                + (f" in {route.tenant}/{route.database}" if route.database else ""),
            )
        if route.resolve_collection:
            owner = self.resolver.cached(route.collection)
            if owner is None:
                raise Later(f"collection {route.collection} is to be looked up")
            return self._collection(ctx, owner == (route.tenant, route.database))
        ctx.allowed = True
        return None

    async def decide(self, scope: Scope, ctx: RequestContext) -> Refusal | None:
        """Whether ``ctx.principal`` may do what ``ctx.route`` does: None (allowed) or the answer."""
        try:
            return self.decide_now(scope, ctx)
        except Later:
            pass
        route = ctx.route
        try:
            ok = await self.resolver.belongs(route.tenant, route.database, route.collection)
        except (UpstreamUnavailable, UpstreamTimeout):
            return UNREACHABLE
        return self._collection(ctx, ok)

    def _collection(self, ctx: RequestContext, belongs: bool) -> Refusal | None:
        """The collection of the path is in the path's database, or it is not found there."""
        if not belongs:
            ctx.allowed, ctx.denied_because = False, "cross_tenant"
            if self.on_cross_tenant is not None:
                self.on_cross_tenant(ctx.route.operation)
            return Refusal(404, "NotFoundError", f"Collection [{ctx.route.collection}] does not exist.")
        ctx.allowed = True
        return None

    def answered(self, route: Route, status: int) -> None:
        """Chroma answered ``status``: what the resolver cached is forgotten after a change."""
        if route.operation not in _FORGETTING or status >= 400:
            return
        if route.operation is Operation.RESET:
            self.resolver.forget()
        elif route.operation is Operation.DELETE_DATABASE:
            self.resolver.forget(tenant=route.tenant, database=route.database)
        else:
            self.resolver.forget(tenant=route.tenant, database=route.database, name_or_id=route.collection)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = request_context(scope)
        refusal = await self.decide(scope, ctx)
        if refusal is not None:
            await send_refusal(send, refusal)
            return
        if ctx.route.operation in _FORGETTING:
            send = self._forget_on_success(ctx.route, send)
        await self.app(scope, receive, send)

    def _forget_on_success(self, route: Route, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answered(route, message["status"])
            await send(message)

        return wrapped
