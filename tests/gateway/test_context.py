"""The request context: one typed object in the scope, made by the classify step."""

from __future__ import annotations

import asyncio

from chromactl.gateway.context import SCOPE_KEY, RequestContext, find_context, request_context
from chromactl.gateway.middleware.classify import ClassifyMiddleware
from chromactl.gateway.routes import UNKNOWN, Operation
from chromactl.gateway.types import Message, Receive, Scope, Send


def test_classify_makes_the_context() -> None:
    seen: list[RequestContext | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(find_context(scope))

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {"type": "http", "method": "GET", "path": "/chroma/api/v2/heartbeat", "headers": []}
    asyncio.run(ClassifyMiddleware(app, "/chroma")(scope, receive, send))
    [ctx] = seen
    assert ctx is not None and ctx.route.operation is Operation.HEARTBEAT
    assert ctx.principal is None and ctx.body is None and not ctx.counted
    assert scope[SCOPE_KEY] is ctx


def test_accessor_makes_an_unclassified_context_once() -> None:
    scope: Scope = {"type": "http"}
    assert find_context(scope) is None
    ctx = request_context(scope)
    assert ctx.route is UNKNOWN
    assert request_context(scope) is ctx


def test_authorization_reports_refusals_with_the_route_operation() -> None:
    from prometheus_client import generate_latest

    from chromactl.gateway.collection_cache import CollectionResolver
    from chromactl.gateway.middleware.authorization import AuthorizationMiddleware
    from chromactl.gateway.principal import ANONYMOUS_ADMIN
    from chromactl.gateway.request_metrics import GatewayMetrics
    from chromactl.gateway.routes import classify

    class Elsewhere:
        def cached(self, collection_id: str) -> None:
            return None  # not known yet: looked up

        async def belongs(self, tenant: str, database: str, collection_id: str) -> bool:
            return False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("must not be called")

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    metrics = GatewayMetrics()
    resolver: CollectionResolver = Elsewhere()  # type: ignore[assignment]
    authz = AuthorizationMiddleware(
        app, resolver, on_denied=metrics.denial, on_cross_tenant=metrics.cross_tenant_refusal
    )
    route = classify("POST", "/api/v2/tenants/t/databases/d/collections/abc/add")
    scope: Scope = {"type": "http", "path": "/", SCOPE_KEY: RequestContext(route, ANONYMOUS_ADMIN)}
    asyncio.run(authz(scope, receive, send))
    assert sent[0]["status"] == 404
    text = generate_latest(metrics.registry).decode()
    assert 'chromactl_gateway_cross_tenant_refusals_total{operation="collection_add"} 1.0' in text
