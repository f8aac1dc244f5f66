"""Write holds: how a snapshot pauses Chroma's writes for its short consistent cut.

A snapshot depends only on :class:`WriteHold`; the gateway provides the real
hold (over HTTP with :class:`GatewayHold`, or in-process with
:class:`CallbackHold`), and :class:`NoHold` serves a stopped data directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, runtime_checkable

import httpx

from chromactl.errors import ChromactlError

#: Agent API paths on the gateway.
HOLD_PATH = "/chromactl/v1/hold"


class HoldError(ChromactlError):
    """Writes could not be held (gateway unreachable, refused, or timed out)."""


@runtime_checkable
class WriteHold(Protocol):
    """A context manager: on enter, no write is in flight and new ones wait.

    ``waited_s`` is how long entering waited for in-flight writes to drain.
    """

    waited_s: float

    def __enter__(self) -> WriteHold: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class NoHold:
    """For a stopped data directory (``--offline``): nothing writes, nothing to hold."""

    waited_s: float = 0.0

    def __enter__(self) -> NoHold:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class CallbackHold:
    """An in-process hold: ``acquire(timeout_s)`` blocks writes, ``release(token)`` resumes.

    The gateway plugs its own write gate in here when it runs the backup itself.
    ``acquire`` returns an opaque token passed back to ``release``.
    """

    def __init__(
        self,
        acquire: Callable[[float], object],
        release: Callable[[object], None],
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self._acquire = acquire
        self._release = release
        self._timeout_s = timeout_s
        self._token: object = None
        self.waited_s = 0.0

    def __enter__(self) -> CallbackHold:
        start = time.perf_counter()
        self._token = self._acquire(self._timeout_s)
        self.waited_s = time.perf_counter() - start
        return self

    def __exit__(self, *exc: object) -> None:
        self._release(self._token)


class GatewayHold:
    """Holds writes through the gateway's agent API.

    ``POST {url}/chromactl/v1/hold`` with ``{"timeout_s": N}`` answers
    ``{"hold_id": ..., "waited_s": ...}``; ``DELETE {url}/chromactl/v1/hold/{id}``
    releases it. The gateway also releases by itself after ``timeout_s``.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s + 10.0, connect=5.0),
            transport=transport,
        )
        self._timeout_s = timeout_s
        self._hold_id: str | None = None
        self.waited_s = 0.0

    def __enter__(self) -> GatewayHold:
        try:
            resp = self._client.post(HOLD_PATH, json={"timeout_s": self._timeout_s})
        except httpx.HTTPError as exc:
            raise HoldError(f"cannot reach the gateway to hold writes: {exc}") from None
        if resp.status_code not in (200, 201):
            raise HoldError(f"the gateway refused to hold writes: HTTP {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        self._hold_id = str(body["hold_id"])
        self.waited_s = float(body.get("waited_s", 0.0))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hold_id is None:
            return
        hold_id, self._hold_id = self._hold_id, None
        try:
            resp = self._client.delete(f"{HOLD_PATH}/{hold_id}")
        except httpx.HTTPError as err:
            raise HoldError(f"cannot release the write hold {hold_id}: {err}") from None
        if resp.status_code not in (200, 204):
            raise HoldError(f"releasing the write hold {hold_id} failed: HTTP {resp.status_code}")

    def close(self) -> None:
        self._client.close()
