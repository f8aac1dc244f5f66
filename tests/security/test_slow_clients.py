"""Slow clients (slowloris and friends) cannot exhaust the gateway.

A gateway with short limits (``gateway.client_limits``) in front of a real Chroma. Slow
connections are closed after the header or body timeout while normal clients keep being
answered; over ``max_connections`` new requests get 503 until slow ones are gone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import Chroma, RunningGateway, run_gateway, wait_until
from tests.security.conftest import READER_A, WRITER_A, Watch, World, gateway_config

pytestmark = pytest.mark.slow

LIMITS = {
    "header_timeout_s": 1.5,
    "body_timeout_s": 1.5,
    "body_deadline_s": 4.0,
    "keep_alive_s": 2.0,
    "max_connections": 48,
    "max_header_bytes": 8192,
}
PATH = "/api/v2/tenants/tenant-a/databases/data/collections"


@pytest.fixture(scope="module")
def slow_gateway(
    sec_chroma: Chroma, world: World, watch: Watch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    config = gateway_config(
        sec_chroma.url, tmp_path_factory.mktemp("slow-secrets"), None, client_limits=LIMITS
    )
    with run_gateway(config) as gw:
        yield gw
        watch.record_metrics(gw)


def _connect(gw: RunningGateway) -> socket.socket:
    port = int(gw.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _closed_by_server(sock: socket.socket, within_s: float) -> bytes | None:
    """What the server sent before closing, or None when it kept the connection open."""
    sock.settimeout(within_s)
    got = b""
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return got
    return None


class Trickle:
    """Sends one byte of an endless header on each socket every ``every_s``."""

    def __init__(self, socks: list[socket.socket], every_s: float = 0.3) -> None:
        self.socks = socks
        self.every_s = every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(b"x" if i else b"GET / HTTP/1.1\r\nX-Slow: ")
            i += 1
            self.stop.wait(self.every_s)

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _normal_requests(gw: RunningGateway, n: int) -> list[int]:
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {READER_A}"}, timeout=5) as c:
        return [c.get(PATH).status_code for _ in range(n)]


def test_slowloris_does_not_starve_normal_clients_and_is_closed(slow_gateway: RunningGateway) -> None:
    socks = [_connect(slow_gateway) for _ in range(30)]
    try:
        with Trickle(socks):
            time.sleep(0.5)
            # While 30 connections trickle headers, normal clients are answered.
            assert _normal_requests(slow_gateway, 20) == [200] * 20
            # Each slow connection is answered 408 and closed, although it keeps sending.
            answers = [_closed_by_server(s, 5.0) for s in socks]
        assert all(a is not None for a in answers), "a slow connection was left open"
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers if a is not None)
        assert b'"error":"RequestTimeoutError"' in (answers[0] or b"")
    finally:
        for s in socks:
            s.close()
    assert _normal_requests(slow_gateway, 3) == [200] * 3


def test_idle_connection_without_a_request_is_closed(slow_gateway: RunningGateway) -> None:
    sock = _connect(slow_gateway)
    try:
        assert _closed_by_server(sock, 5.0) == b""
    finally:
        sock.close()


def test_slow_body_gets_408_and_is_closed(slow_gateway: RunningGateway) -> None:
    sock = _connect(slow_gateway)
    try:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER_A}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name"'.encode()
        )
        answer = _closed_by_server(sock, 6.0)
    finally:
        sock.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"RequestTimeoutError" in answer and b"x-chromactl-origin: gateway" in answer


def test_trickled_body_hits_the_body_deadline(slow_gateway: RunningGateway) -> None:
    sock = _connect(slow_gateway)
    start = time.monotonic()
    try:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER_A}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        answer = b""
        while time.monotonic() - start < 10:
            try:
                sock.send(b" ")  # one byte every 0.5 s: each wait is short, the whole is not
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_oversized_headers_get_431(slow_gateway: RunningGateway) -> None:
    sock = _connect(slow_gateway)
    try:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 20000}\r\n\r\n".encode())
        answer = _closed_by_server(sock, 5.0)
    finally:
        sock.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 431 "), answer


def test_a_body_sent_with_its_headers_does_not_count_as_headers(slow_gateway: RunningGateway) -> None:
    # One write: small headers, then a body far larger than max_header_bytes, so that both
    # arrive in the same read, as a client's large `add` does.
    body = b'{"name": "' + b"n" * 30000 + b'"}'
    sock = _connect(slow_gateway)
    try:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER_A}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.settimeout(10)
        answer = sock.recv(65536)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 "), answer
    assert not answer.startswith(b"HTTP/1.1 431 "), answer  # Chroma judged it, not the header limit


def test_idle_keep_alive_connection_is_closed(slow_gateway: RunningGateway) -> None:
    sock = _connect(slow_gateway)
    try:
        sock.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert _closed_by_server(sock, 5.0) == b""
    finally:
        sock.close()


def test_over_the_connection_limit_new_requests_get_503_then_recover(slow_gateway: RunningGateway) -> None:
    socks = [_connect(slow_gateway) for _ in range(LIMITS["max_connections"])]  # type: ignore[arg-type]
    try:
        time.sleep(0.2)
        with httpx.Client(base_url=slow_gateway.url, timeout=5) as c:
            resp = c.get("/api/v2/heartbeat")
        assert resp.status_code == 503
        assert resp.json()["error"] == "ServiceUnavailable"
        assert resp.headers["retry-after"] == "1"
        assert resp.headers["x-chromactl-origin"] == "gateway"
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: httpx.get(slow_gateway.url + "/api/v2/heartbeat").status_code == 200, 10, "recovery")
    assert _normal_requests(slow_gateway, 3) == [200] * 3


def test_limits_are_configurable(tmp_path: Path) -> None:
    from chromactl.config import parse_config

    settings = parse_config({"gateway": {"client_limits": {"header_timeout_s": 3, "max_connections": 10}}})
    assert settings.gateway.client_limits.header_timeout_s == 3
    assert settings.gateway.client_limits.max_connections == 10
    with pytest.raises(Exception, match="max_header_bytes"):
        parse_config({"gateway": {"client_limits": {"max_header_bytes": 10}}})
