"""The request context: one typed object in the scope, made by the classify step."""

from __future__ import annotations

import asyncio

from chromactl.gateway.classify import ClassifyMiddleware
from chromactl.gateway.context import SCOPE_KEY, RequestContext, find_context, request_context
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
