"""ASGI type aliases shared by the gateway modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def state(scope: Scope) -> MutableMapping[str, Any]:
    """The per-request state dict (``scope["state"]``, as Starlette uses it)."""
    st: MutableMapping[str, Any] = scope.setdefault("state", {})
    return st
