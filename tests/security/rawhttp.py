"""Byte-exact HTTP/1.1 requests over a socket: no client normalises the path or headers."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def text(self) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.status}\n{head}\n\n{self.body.decode('latin-1')}"


def request(
    base_url: str,
    method: bytes | str,
    target: bytes | str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    timeout: float = 20.0,
    content_length: bool = True,
) -> RawResponse:
    """Send exactly ``method target`` with ``headers`` (and Host, Connection: close)."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    m = method.encode() if isinstance(method, str) else method
    t = target.encode("latin-1") if isinstance(target, str) else target
    lines = [m + b" " + t + b" HTTP/1.1", b"Host: " + f"{host}:{port}".encode(), b"Connection: close"]
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if body and content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    sock = socket.create_connection((host, port), timeout=timeout)
    if url.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=host)
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock, method=m.decode("latin-1"))
        resp.begin()
        payload = resp.read()
        return RawResponse(resp.status, list(resp.getheaders()), payload)
    finally:
        sock.close()
