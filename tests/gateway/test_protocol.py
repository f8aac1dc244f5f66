"""The gateway's HTTP protocol, driven in memory: the uvicorn internals it relies on still work.

``chromactl.gateway.protocol`` subclasses uvicorn's httptools protocol; these tests feed it
bytes through a fake transport, so an uvicorn upgrade that changes a hook or an attribute
it uses fails here, by name, before any end-to-end suite.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from chromactl.config import ClientLimitsSettings
from chromactl.gateway.protocol import GatewayHttpProtocol, ServerConfig

#: uvicorn hooks the protocol overrides or calls.
HOOKS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "on_response_complete",
    "shutdown",
    "timeout_keep_alive_handler",
    "_start_asgi_task",  # the fast path starts its cycles as uvicorn starts ASGI ones
    "_unset_keepalive_if_required",  # the keep-alive timer is re-armed lazily
)
#: uvicorn attributes the protocol reads on itself.
ATTRIBUTES = (
    "loop",
    "transport",
    "client",
    "connections",
    "tasks",
    "cycle",
    "scope",
    # the fast path's cycles
    "parser",
    "headers",
    "root_path",
    "flow",
    "pipeline",
    "server_state",
    "logger",
    "access_logger",
    "access_log",
    "expect_100_continue",
    "app",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
)


class FakeTransport:
    def __init__(self, peer_der: bytes | None = None) -> None:
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self._peer_der = peer_der

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("10.0.0.7", 40000)
        if name == "sockname":
            return ("127.0.0.1", 8000)
        if name == "ssl_object" and self._peer_der is not None:
            der = self._peer_der

            class _Ssl:
                def getpeercert(self, binary_form: bool = False) -> bytes:
                    return der

            return _Ssl()
        return default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_write_buffer_limits(self, *a: Any, **kw: Any) -> None: ...


async def _echo_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    tls = scope.get("extensions", {}).get("tls", {})
    body = repr(tls.get("client_cert_names", [])).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def _connect(
    loop: asyncio.AbstractEventLoop, *, peer_der: bytes | None = None, **limits: Any
) -> tuple[GatewayHttpProtocol, FakeTransport]:
    config = ServerConfig(
        _echo_scope,
        client_limits=ClientLimitsSettings(**limits),
        peer_certificates=peer_der is not None,
        lifespan="off",
        log_config=None,
    )
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    assert isinstance(protocol, GatewayHttpProtocol)
    transport = FakeTransport(peer_der)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_uvicorn_hooks_and_attributes_are_there() -> None:
    missing = [h for h in HOOKS if not callable(getattr(HttpToolsProtocol, h, None))]
    assert not missing, f"uvicorn's HttpToolsProtocol lost {missing}: adapt chromactl/gateway/protocol.py"

    async def main() -> None:
        protocol, _ = _connect(asyncio.get_running_loop())
        absent = [a for a in ATTRIBUTES if not hasattr(protocol, a)]
        assert not absent, f"uvicorn's HttpToolsProtocol lost {absent}: adapt chromactl/gateway/protocol.py"

    asyncio.run(main())


def test_an_answer_leaves_in_one_write() -> None:
    async def main() -> FakeTransport:
        protocol, transport = _connect(asyncio.get_running_loop())
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        return transport

    transport = asyncio.run(main())
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n") and transport.written.endswith(b"[]")
    assert transport.writes == 1


def test_headers_over_the_limit_get_431_and_close() -> None:
    async def main() -> FakeTransport:
        protocol, transport = _connect(asyncio.get_running_loop(), max_header_bytes=4096)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        await _settle()
        return transport

    transport = asyncio.run(main())
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b'"error":"RequestHeaderFieldsTooLargeError"' in transport.written
    assert b"x-chromactl-origin: gateway" in transport.written.lower() and transport.closed


def test_headers_that_do_not_arrive_in_time_get_408() -> None:
    async def main() -> FakeTransport:
        protocol, transport = _connect(asyncio.get_running_loop(), header_timeout_s=0.05)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.2)
        return transport

    transport = asyncio.run(main())
    assert transport.written.startswith(b"HTTP/1.1 408 ") and transport.closed


def test_over_the_connection_limit_gets_a_chroma_shaped_503() -> None:
    async def main() -> FakeTransport:
        loop = asyncio.get_running_loop()
        first, _ = _connect(loop, max_connections=1)
        protocol, transport = _connect(loop, max_connections=1)
        protocol.connections.add(first)  # type: ignore[arg-type]
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        return transport

    transport = asyncio.run(main())
    assert transport.written.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in transport.written


@pytest.mark.parametrize("peer", [True, False])
def test_the_verified_peer_certificate_reaches_the_scope(tmp_path: Any, peer: bool) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from chromactl.gateway.auth.client_cert import certificate_names
    from tests.gateway.helpers import make_cert

    _, _, cert, _ = make_cert(tmp_path, "svc-ingest")
    der = cert.public_bytes(Encoding.DER) if peer else None

    async def main() -> FakeTransport:
        protocol, transport = _connect(asyncio.get_running_loop(), peer_der=der)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        return transport

    transport = asyncio.run(main())
    names = certificate_names(cert) if peer else []
    assert transport.written.endswith(repr(names).encode()) and (names or not peer)
