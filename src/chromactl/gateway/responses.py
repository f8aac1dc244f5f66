"""Chroma-shaped error answers: ``{"error": "<Name>", "message": "..."}``.

The gateway's own errors carry ``X-Chromactl-Origin: gateway`` so that an operator (and the
fuzz tests) can tell them from Chroma's errors, which the gateway passes on untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from chromactl.gateway.types import Send

#: Set on every error answer the gateway makes itself.
ORIGIN_HEADER = "x-chromactl-origin"


async def send_json(
    send: Send,
    status: int,
    body: object,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Send a whole JSON response."""
    data = json.dumps(body, separators=(",", ":")).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A step's decision not to forward a request: the error the Chroma clients map by its
    ``error`` name. Sent as ASGI messages (:func:`send_error`) or as bytes by the fast path
    (:meth:`encode`), so both paths answer alike."""

    status: int
    error: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        return json.dumps({"error": self.error, "message": self.message}, separators=(",", ":")).encode()

    def raw_headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers),
            (ORIGIN_HEADER.encode(), b"gateway"),
        ]

    @property
    def closes(self) -> bool:
        """The answer ends the connection (``Connection: close``)."""
        return any(k.lower() == "connection" and v.lower() == "close" for k, v in self.headers)


async def send_refusal(send: Send, refusal: Refusal) -> None:
    body = refusal.body()
    headers = refusal.raw_headers(body)
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Send an error the Chroma clients map by its ``error`` name."""
    await send_refusal(send, Refusal(status, error, message, tuple(headers)))
