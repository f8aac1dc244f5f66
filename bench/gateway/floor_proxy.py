"""The least a Python proxy can spend per request: uvloop, httptools, one callback per read.

A benchmark target only (``floor.py``), never a server: it decides nothing (no
authentication, no limits, no metrics), keeps no timeouts and trusts both sides' framing.
Each client connection's requests are parsed by httptools and written to a kept-alive
connection to Chroma in one write; Chroma's answer goes back in one write when it is whole.
No task, future or coroutine runs per request: what it spends is the floor under any proxy
written on the same event loop and parser, which the gateway's fast path is.

    python bench/gateway/floor_proxy.py CHROMA_HOST CHROMA_PORT LISTEN_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import httptools
import uvloop

_DROP_REQUEST = frozenset({b"connection", b"host", b"content-length", b"keep-alive"})
_DROP_ANSWER = frozenset({b"connection", b"keep-alive"})


class Upstream(asyncio.Protocol):
    """One kept-alive connection to Chroma, one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: Client | None = None
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.out = []
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name not in _DROP_ANSWER:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parts = [b"HTTP/1.1 %d \r\n" % self.parser.get_status_code()]
        for name, value in self.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.out.append(b"".join(parts))

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.transport is not None:
            client.transport.write(b"".join(self.out))
        self.pool.idle.append(self)


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Upstream] = []

    def send(self, client: Client, request: bytes) -> None:
        if self.idle:
            upstream = self.idle.pop()
            upstream.client = client
            assert upstream.transport is not None
            upstream.transport.write(request)
        else:
            asyncio.get_running_loop().create_task(self._connect_and_send(client, request))

    async def _connect_and_send(self, client: Client, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        upstream.client = client
        assert upstream.transport is not None
        upstream.transport.write(request)


class Client(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        parts = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            if name not in _DROP_REQUEST:
                parts += (name, b": ", value, b"\r\n")
        parts += (b"host: chroma\r\ncontent-length: %d\r\n\r\n" % len(body), body)
        self.pool.send(self, b"".join(parts))


async def serve(chroma_host: str, chroma_port: int, port: int) -> None:
    pool = Pool(chroma_host, chroma_port)
    server = await asyncio.get_running_loop().create_server(lambda: Client(pool), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
