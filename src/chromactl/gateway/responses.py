"""Chroma-shaped error answers: ``{"error": "<Name>", "message": "..."}``.

The gateway's own errors carry ``X-Chromactl-Origin: gateway`` so that an operator (and the
fuzz tests) can tell them from Chroma's errors, which the gateway passes on untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

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


async def send_error(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Send an error the Chroma clients map by its ``error`` name."""
    marked = [*headers, (ORIGIN_HEADER, "gateway")]
    await send_json(send, status, {"error": error, "message": message}, marked)
