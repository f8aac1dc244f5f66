"""The reverse proxy's answer path: small answers in one body message, large ones streamed,
hop-by-hop headers dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from chromactl.gateway.proxy import BUFFER_BELOW, ReverseProxy
from chromactl.gateway.upstream import Body, Headers


class FakeResponse:
    def __init__(self, chunks: list[bytes], *, length: bool) -> None:
        self.status = 200
        self.chunks = chunks
        size = sum(map(len, chunks))
        self.headers: Headers = [(b"Content-Type", b"application/json"), (b"Connection", b"keep-alive")]
        if length:
            self.headers.append((b"Content-Length", str(size).encode()))
        self.closed = False

    async def body(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def read(self) -> bytes:
        return b"".join(self.chunks)

    async def aclose(self) -> None:
        self.closed = True


class FakeUpstream:
    def __init__(self, resp: FakeResponse) -> None:
        self.resp = resp

    async def request(self, method: str, path: str, headers: Headers, body: Body) -> FakeResponse:
        return self.resp

    async def aclose(self) -> None:
        pass


def run(resp: FakeResponse) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/v2/x", "headers": [], "query_string": b""}
    asyncio.run(ReverseProxy(FakeUpstream(resp))(scope, receive, send))
    return sent


def test_small_answer_is_one_body_message() -> None:
    resp = FakeResponse([b'{"a":', b"1}"], length=True)
    start, body = run(resp)
    assert start["status"] == 200
    assert (b"connection", b"keep-alive") not in start["headers"]
    assert (b"content-length", b"7") in start["headers"]
    assert body == {"type": "http.response.body", "body": b'{"a":1}'}
    assert resp.closed


def test_large_or_unsized_answers_are_streamed() -> None:
    big = [b"x" * BUFFER_BELOW, b"y"]
    messages = run(FakeResponse(big, length=True))
    assert [m.get("body") for m in messages[1:]] == [*big, b""]
    assert messages[-1].get("more_body", False) is False
    unsized = run(FakeResponse([b"a", b"b"], length=False))
    assert [m.get("body") for m in unsized[1:]] == [b"a", b"b", b""]
