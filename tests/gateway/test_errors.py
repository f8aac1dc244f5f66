"""Error answers: Chroma's shape, 413 before the body is read, 503 when Chroma is down."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from chromactl.gateway.middleware.body_limit import BodyLimitMiddleware
from tests.gateway.conftest import ADMIN_TOKEN, token_config
from tests.gateway.helpers import Chroma, RunningGateway, free_port, run_gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
D = "/api/v2/tenants/default_tenant/databases/default_database"


def test_declared_oversize_body_is_refused_unread() -> None:
    received: list[object] = []
    sent: list[dict[str, object]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("must not be called")

    async def receive():  # type: ignore[no-untyped-def]
        received.append(1)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"5000")], "state": {}}
    asyncio.run(BodyLimitMiddleware(app, 1024)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert received == []


@pytest.mark.slow
def test_413_by_content_length(token_gateway: RunningGateway) -> None:
    limit = token_gateway.settings.gateway.max_body_bytes
    with socket.create_connection(("127.0.0.1", token_gateway.settings.gateway.port), 5) as s:
        # Declare a huge body and send none of it: the answer must come anyway.
        s.sendall(
            f"POST {D}/collections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
        )
        s.settimeout(10)
        data = b""
        while chunk := s.recv(4096):  # the gateway closes the connection after a 413
            data += chunk
        head = data.decode()
    assert head.startswith("HTTP/1.1 413")
    assert '"error":"PayloadTooLargeError"' in head


@pytest.mark.slow
def test_413_for_chunked_bodies(chroma: Chroma, secrets_dir: Path) -> None:
    with run_gateway(token_config(chroma, secrets_dir, max_body_bytes=4096)) as gw:

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"x" * 1000

        resp = httpx.post(f"{gw.url}{D}/collections", content=chunks(), headers=ADMIN)
        assert resp.status_code == 413
        small = httpx.post(
            f"{gw.url}{D}/collections",
            content=iter([b'{"name": "chunked-ok", ', b'"get_or_create": true}']),
            headers={**ADMIN, "content-type": "application/json"},
        )
        assert small.status_code == 200
        assert small.json()["name"] == "chunked-ok"


@pytest.mark.slow
def test_503_with_retry_after_when_chroma_is_down(secrets_dir: Path) -> None:
    down = Chroma(f"http://127.0.0.1:{free_port()}", None, secrets_dir)  # type: ignore[arg-type]
    with run_gateway(token_config(down, secrets_dir)) as gw:
        resp = httpx.get(f"{gw.url}{D}/collections", headers=ADMIN)
        assert resp.status_code == 503
        assert resp.json()["error"] == "ServiceUnavailable"
        assert int(resp.headers["retry-after"]) > 0
        # Record operations fail the same way at the collection lookup.
        rec = httpx.post(
            f"{gw.url}{D}/collections/00000000-0000-4000-8000-000000000000/get", json={}, headers=ADMIN
        )
        assert rec.status_code == 503
        # Probes say Chroma is not there instead of hanging.
        assert httpx.get(f"{gw.url}/api/v2/heartbeat").status_code == 503


@pytest.mark.slow
def test_chroma_errors_pass_through_unchanged(token_gateway: RunningGateway) -> None:
    # (httpx's own User-Agent is a 0.5/0.6 client's, whose collection errors are translated:
    # docs/legacy-clients.md)
    named = {**ADMIN, "User-Agent": "curl/8.5.0"}
    resp = httpx.get(f"{token_gateway.url}{D}/collections/does-not-exist", headers=named)
    assert resp.status_code == 404
    assert resp.json()["error"] == "NotFoundError"
