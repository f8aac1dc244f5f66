"""Chroma-shaped error answers: ``{"error": "<Name>", "message": "..."}``."""

from __future__ import annotations

import json
from collections.abc import Iterable

from chromactl.gateway.types import Send


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


async def send_error(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Send an error the Chroma clients map by its ``error`` name."""
    await send_json(send, status, {"error": error, "message": message}, headers)
