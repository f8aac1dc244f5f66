"""One socket write for an answer's head and body.

uvicorn writes the status line and headers of an answer as soon as the app sends
``http.response.start``, and the body with the next message: two ``send`` system calls
and two wake-ups of the client for every answer. :class:`CoalescingTransport` stands
between uvicorn's request cycle and the socket: a write is held until the next write
(then both go out as one) or, at the latest, until the event loop's next turn, so a
streaming answer is never delayed by more than one turn. ``close`` sends what is held
first.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps a transport; consecutive writes in one turn of the loop become one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.write(held + data)

    def flush(self) -> None:
        """Send what is held (no-op when nothing is)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
