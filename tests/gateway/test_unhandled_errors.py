"""An exception no step handles: a logged, counted, gateway-marked Chroma-shaped 500."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from prometheus_client import generate_latest

from chromactl.config import parse_config
from chromactl.gateway.app import build_gateway
from chromactl.gateway.middleware.errors import ErrorMiddleware
from chromactl.gateway.proxy import ReverseProxy
from chromactl.gateway.types import Receive, Scope, Send

D = "/api/v2/tenants/default_tenant/databases/default_database"
#: Authentication off: every request reaches the proxy step as an anonymous admin.
OPEN = {"gateway": {"auth": {"enabled": False}}}


async def _get(app: object, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path, headers=headers or {})


def test_exception_in_a_step_becomes_a_counted_marked_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(self: ReverseProxy, scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(ReverseProxy, "__call__", boom)
    gateway = build_gateway(parse_config(OPEN))
    caplog.set_level(logging.ERROR, logger="chromactl.gateway.errors")
    r = asyncio.run(_get(gateway, f"{D}/collections", {"X-Request-Id": "req-42"}))
    assert r.status_code == 500
    assert r.headers["x-chromactl-origin"] == "gateway"
    assert r.headers["x-request-id"] == "req-42"
    body = r.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "InternalError"
    assert "req-42" in body["message"]
    assert "injected failure" not in body["message"]  # no internals leak to the client
    [record] = [rec for rec in caplog.records if rec.name == "chromactl.gateway.errors"]
    assert "request_id=req-42" in record.getMessage()
    assert record.exc_info is not None and "injected failure" in str(record.exc_info[1])
    text = generate_latest(gateway.metrics.registry).decode()
    # Counted once, by the metrics step the exception passed through.
    line = (
        'chromactl_gateway_requests_total{database="default_database",operation="list_collections",'
        'status_class="5xx",tenant="default_tenant"} 1.0'
    )
    assert line in text


def test_exception_before_the_metrics_step_is_counted_by_the_handler(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(method: str, path: str) -> None:
        raise RuntimeError("classify failed")

    monkeypatch.setattr("chromactl.gateway.middleware.classify.classify", boom)
    gateway = build_gateway(parse_config({}))
    caplog.set_level(logging.ERROR, logger="chromactl.gateway.errors")
    r = asyncio.run(_get(gateway, "/api/v2/heartbeat"))
    assert r.status_code == 500
    assert r.headers["x-chromactl-origin"] == "gateway"
    rid = r.headers["x-request-id"]
    assert len(rid) == 32  # generated when the client sent none
    assert any(f"request_id={rid}" in rec.getMessage() for rec in caplog.records)
    text = generate_latest(gateway.metrics.registry).decode()
    line = (
        'chromactl_gateway_requests_total{database="",operation="unknown",status_class="5xx",tenant=""} 1.0'
    )
    assert line in text


def test_exception_after_the_answer_began_is_raised_on(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict[str, object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-answer")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "state": {}}
    caplog.set_level(logging.ERROR, logger="chromactl.gateway.errors")
    with pytest.raises(RuntimeError, match="mid-answer"):
        asyncio.run(ErrorMiddleware(app)(scope, receive, send))  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert any("request_id=" in rec.getMessage() for rec in caplog.records)
