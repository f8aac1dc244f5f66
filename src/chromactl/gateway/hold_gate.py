"""Hold writes: new writes wait, writes in flight finish, then the caller has the data still.

Online backups take a hold, copy Chroma's files, and release it. A hold ends by itself
after its timeout so that a crashed backup never blocks writes for good. The gate is
plain asyncio and usable in-process::

    async with gate.held(timeout_s=30) as hold:
        copy_files()
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol


class WritesHeld(Exception):
    """A write waited for a hold longer than it may."""


class DrainTimeout(Exception):
    """Writes in flight did not finish in time; the hold was not taken."""


@dataclass(slots=True)
class Hold:
    """One granted hold."""

    hold_id: str
    #: Seconds spent waiting for writes in flight to finish.
    waited_s: float
    #: Monotonic time at which the hold ends by itself.
    expires_at: float
    #: Seconds spent before closing, waiting for a moment with no write in flight (``quiet_s``).
    quiet_s: float = 0.0
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


def end_hold(holds: dict[str, Hold], hold_id: str) -> bool:
    """Take ``hold_id`` out of ``holds`` and stop its timer; False if it had already ended."""
    hold = holds.pop(hold_id, None)
    if hold is None:
        return False
    if hold._timer is not None:
        hold._timer.cancel()
    return True


class WriteGate:
    """Counts writes in flight and lets holders stop new ones."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._holds: dict[str, Hold] = {}
        self._open = asyncio.Event()
        self._open.set()
        self._drained = asyncio.Event()
        self._drained.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def writes_in_flight(self) -> int:
        return self._in_flight

    def holds(self) -> list[Hold]:
        return list(self._holds.values())

    @asynccontextmanager
    async def write(self, wait_s: float) -> AsyncIterator[None]:
        """Run one write: waits up to ``wait_s`` while held, raises :class:`WritesHeld`."""
        if not self._open.is_set():
            try:
                await asyncio.wait_for(self._wait_open(), wait_s)
            except TimeoutError:
                raise WritesHeld(f"writes are held; waited {wait_s:g}s") from None
        self._in_flight += 1
        self._drained.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()

    async def _wait_open(self) -> None:
        # A hold can start between the event firing and this task running: check again.
        while not self._open.is_set():
            await self._open.wait()

    async def _quiet(self, within_s: float) -> None:
        """Wait, at most ``within_s``, for a moment with no write in flight (writes go on)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self._in_flight and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), left)

    async def hold(
        self, timeout_s: float, drain_timeout_s: float | None = None, quiet_s: float = 0.0
    ) -> Hold:
        """Stop new writes and wait for those in flight.

        With ``quiet_s``, the gate first waits up to that long for a moment with no write
        in flight and closes then, so no write waits for another to finish. The hold ends
        after ``timeout_s`` unless released earlier. If writes in flight do not finish
        within ``drain_timeout_s`` (default: ``timeout_s``) the hold is given back and
        :class:`DrainTimeout` raised.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        if quiet_s > 0:
            await self._quiet(quiet_s)
        start = loop.time()
        hold = Hold(secrets.token_hex(8), 0.0, start + timeout_s, start - asked)
        self._holds[hold.hold_id] = hold
        self._open.clear()
        hold._timer = loop.call_later(timeout_s, self.release, hold.hold_id)
        try:
            await asyncio.wait_for(self._drained.wait(), drain_timeout_s or timeout_s)
        except TimeoutError:
            self.release(hold.hold_id)
            raise DrainTimeout(
                f"{self._in_flight} write(s) still running after {drain_timeout_s or timeout_s:g}s"
            ) from None
        except BaseException:
            self.release(hold.hold_id)
            raise
        hold.waited_s = loop.time() - start
        return hold

    def release(self, hold_id: str) -> bool:
        """End a hold; writes go on when no hold is left. False if it had already ended."""
        if not end_hold(self._holds, hold_id):
            return False
        if not self._holds:
            self._open.set()
        return True

    @asynccontextmanager
    async def held(self, timeout_s: float, drain_timeout_s: float | None = None) -> AsyncIterator[Hold]:
        """Hold writes for the ``async with`` block (and at most ``timeout_s``)."""
        hold = await self.hold(timeout_s, drain_timeout_s)
        try:
            yield hold
        finally:
            self.release(hold.hold_id)


class HoldGate(Protocol):
    """What holding writes needs (the agent API's hold routes, a backup's hold): one
    gateway's :class:`WriteGate`, or a gate over several worker processes
    (``chromactl.pod.control.WorkersGate``)."""

    async def hold(
        self, timeout_s: float, drain_timeout_s: float | None = None, quiet_s: float = 0.0
    ) -> Hold: ...

    def release(self, hold_id: str) -> bool: ...

    def holds(self) -> list[Hold]: ...

    async def writes_in_flight(self) -> int: ...
