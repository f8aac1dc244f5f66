"""Write holds: how a snapshot pauses Chroma's writes for its short consistent cut.

A snapshot depends only on :class:`WriteHold`; the gateway provides the real
hold (over its agent API with :class:`GatewayHold`, or in Chroma's pod with
:class:`CallbackHold`), and :class:`NoHold` serves a stopped data directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, runtime_checkable

import httpx

from chromactl.agentapi import AgentClient, AgentError, ClientTLS
from chromactl.errors import ChromactlError

#: A hold first waits up to this long for a moment with no write in flight (writes go on
#: meanwhile) and closes the gate then: the hold then does not wait for a write to finish.
QUIET_S = 0.5


class HoldError(ChromactlError):
    """Writes could not be held (gateway unreachable, refused, or timed out)."""


@runtime_checkable
class WriteHold(Protocol):
    """A context manager: on enter, no write is in flight and new ones wait.

    ``waited_s`` is how long writes were held while entering: the drain of the writes in
    flight (not the wait for a quiet moment before, when writes still went on).
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
        # A gate's hold knows its drain; otherwise all of acquiring counts.
        self.waited_s = float(getattr(self._token, "waited_s", time.perf_counter() - start))
        return self

    def __exit__(self, *exc: object) -> None:
        self._release(self._token)


class GatewayHold:
    """Holds writes through the gateway's agent API (from outside Chroma's pod).

    The gateway also ends the hold by itself after ``timeout_s``.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        quiet_s: float = QUIET_S,
        tls: ClientTLS | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = AgentClient(url, token, tls=tls, transport=transport)
        self._timeout_s = timeout_s
        self._quiet_s = quiet_s
        self._hold_id: str | None = None
        self.waited_s = 0.0

    def __enter__(self) -> GatewayHold:
        try:
            grant = self._client.hold(self._timeout_s, self._quiet_s)
        except AgentError as exc:
            raise HoldError(f"cannot hold writes: {exc}") from None
        self._hold_id = grant["hold_id"]
        self.waited_s = grant["waited_s"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hold_id is None:
            return
        hold_id, self._hold_id = self._hold_id, None
        try:
            released = self._client.release(hold_id)
        except AgentError as err:
            raise HoldError(f"cannot release the write hold {hold_id}: {err}") from None
        if not released:
            raise HoldError(
                f"the write hold {hold_id} ended by itself after {self._timeout_s:g}s, before the "
                "consistent copy was done, so the copy may not be consistent: raise backup.hold_timeout_s"
            )

    def close(self) -> None:
        self._client.close()
