"""A standby follows the primary: it receives the replication stream, stores each record in its own
log, applies it to its own Chroma (:mod:`.applier`) and tells the primary how far it is.

Receiving and applying are two tasks joined by a queue, so a standby knows what it holds
but has not applied yet: it may take the lease only when that queue is empty
(:meth:`Follower.caught_up`). After a reconnect, or a restart, it asks the stream for the
records after the last one it stored; the ones stored but not applied are applied first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable

import httpx

from chromactl.errors import ChromactlError

from . import contract
from .applier import Applier, LostTrack, NeedsRebuild
from .replication_log import Heartbeat, Record, ReplicationLog, decode_records
from .state import NodeState

log = logging.getLogger("chromactl.ha.follower")

#: Seconds between tries to reach the primary.
RETRY_S = 0.5
#: Acks go this often; to a synchronous primary also at once when the queue empties.
ACK_EVERY_S = 0.5


class StreamRefused(ChromactlError):
    """The primary cannot stream to this standby (409 Diverged, TooFarBehind, NeedsBase)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Follower:
    """Follows the pod ``primary()`` names (None: nobody leads now) while running."""

    def __init__(
        self,
        pod: str,
        state: NodeState,
        replog: ReplicationLog,
        applier: Applier,
        *,
        primary: Callable[[], str | None],
        peer_url: Callable[[str], str],
        client: httpx.AsyncClient,
        save: Callable[[], None],
    ) -> None:
        self.pod, self.state, self.log, self.applier = pod, state, replog, applier
        self.primary, self.peer_url, self.client, self.save = primary, peer_url, client, save
        self.queue: asyncio.Queue[Record] = asyncio.Queue()
        self.applying = False
        #: The primary's last index as it last said, and when this pod first heard of each
        #: index it has not applied yet (as (index, monotonic time) steps).
        self.primary_last = replog.last_index
        self._heard_at: deque[tuple[int, float]] = deque()
        #: Whether the primary answers writes only once a standby applied them (ack at once).
        self.synchronous = False
        self.last_contact = time.monotonic()
        self.connected_to: str | None = None
        #: Set when this standby cannot follow by replay any more (it is to be rebuilt).
        self.rebuild: BaseException | None = None
        #: The index of the break record it stopped at (:class:`LostTrack`), if that is why.
        self.stopped_at_break: int | None = None
        self._acked = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the node asks --------------------------------------------------------------

    def caught_up(self, max_entries: int) -> bool:
        """Every stored record applied, and at most ``max_entries`` behind what the primary last said."""
        return (
            self.rebuild is None
            and self.queue.empty()
            and not self.applying
            and self.lag_entries() <= max_entries
        )

    def stopped_at_a_break(self, max_entries: int) -> bool:
        """It stopped at a break, the last record it has, at most ``max_entries`` behind what
        the primary last said: it lacks the write the primary did not acknowledge (whether the
        primary's Chroma took it is unknown) and at most as many as a failover may lose."""
        return (
            self.stopped_at_break is not None
            and self.stopped_at_break == self.log.last_index
            and self.primary_last - self.stopped_at_break <= max_entries
            and self.queue.empty()
            and not self.applying
        )

    def lag_entries(self) -> int:
        return max(0, self.primary_last - self.state.applied)

    def lag_s(self) -> float:
        """How long ago this standby heard of the oldest write it has not applied (or, when
        the primary is silent, since it last heard from it beyond the heartbeat)."""
        now = time.monotonic()
        behind = now - self._heard_at[0][1] if self._heard_at else 0.0
        return max(behind, now - self.last_contact - contract.HEARTBEAT_S * 2, 0.0)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        for record in self.log.read(self.state.applied):
            self.queue.put_nowait(record)
        self._tasks = [
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._apply()),
            asyncio.create_task(self._ack()),
        ]

    async def stop(self) -> None:
        """Stop receiving; apply what was received; stop."""
        receive, apply, ack = self._tasks
        receive.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receive
        while (not self.queue.empty() or self.applying) and self.rebuild is None and not apply.done():
            await asyncio.sleep(0.01)
        for task in (apply, ack):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.save()

    async def _receive(self) -> None:
        while self.rebuild is None:
            primary = self.primary()
            if not primary or primary == self.pod:
                self.connected_to = None
                await asyncio.sleep(RETRY_S)
                continue
            try:
                await self._stream_from(primary)
            except StreamRefused as exc:
                log.error("the primary %s refuses to stream to this pod: %s", primary, exc)
                self.rebuild = exc
                return
            except (httpx.HTTPError, ValueError, ChromactlError) as exc:
                log.info("replication stream from %s ended: %s", primary, exc)
            self.connected_to = None
            await asyncio.sleep(RETRY_S)

    async def _stream_from(self, primary: str) -> None:
        params = {
            "after": str(self.log.last_index),
            "term": self.state.term_at(self.log.last_index),
            "pod": self.pod,
        }
        url = self.peer_url(primary) + contract.STREAM
        timeout = httpx.Timeout(5.0, read=contract.HEARTBEAT_S * 5)
        async with self.client.stream("GET", url, params=params, timeout=timeout) as answer:
            if answer.status_code == 409:
                body = json.loads(await answer.aread())
                raise StreamRefused(body.get("error", "Refused"), body.get("message", ""))
            if answer.status_code != 200:
                raise httpx.HTTPError(f"HTTP {answer.status_code}: {(await answer.aread())[:200]!r}")
            history = json.loads(answer.headers.get(contract.HISTORY_HEADER, "[]"))
            self.synchronous = answer.headers.get(contract.SYNCHRONOUS_HEADER) == "1"
            self.state.history = [(str(t), int(f)) for t, f in history]
            origin = answer.headers.get(contract.ORIGIN_HEADER, self.state.origin)
            self.state.origin = "empty" if origin == "empty" else "data"
            self.state.role, self.state.clean = "standby", True
            self.save()
            self.connected_to = primary
            log.info("following %s from index %d", primary, self.log.last_index)
            await self._read(answer)

    async def _read(self, answer: httpx.Response) -> None:
        buffer = b""
        async for chunk in answer.aiter_bytes():
            self.last_contact = time.monotonic()
            buffer += chunk
            items, used = decode_records(buffer)
            buffer = buffer[used:]
            for item in items:
                if isinstance(item, Heartbeat):
                    self._heard(item.last)
                    continue
                self.log.add(item)
                self._heard(item.index)
                self.queue.put_nowait(item)

    def _heard(self, last: int) -> None:
        if last > self.primary_last:
            self.primary_last = last
            self._heard_at.append((last, time.monotonic()))

    def _applied(self, index: int) -> None:
        self.state.applied = index
        while self._heard_at and self._heard_at[0][0] <= index:
            self._heard_at.popleft()

    async def _apply(self) -> None:
        saved = time.monotonic()
        while True:
            record = await self.queue.get()
            self.applying = True
            try:
                await self.applier.apply(record.entry)
            except NeedsRebuild as exc:
                log.error("cannot follow by replay: %s", exc)
                if isinstance(exc, LostTrack):
                    self.stopped_at_break = record.index
                self.rebuild = exc
                return
            finally:
                self.applying = False
            self._applied(record.index)
            if self.queue.empty() or time.monotonic() - saved > 1.0:
                self.save()
                saved = time.monotonic()
            if self.queue.empty() and self.synchronous:
                self._acked.set()  # a write waits for this ack; asynchronous ones go in batches

    async def _ack(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), ACK_EVERY_S)
            self._acked.clear()
            primary = self.connected_to
            if primary is None:
                continue
            ack: contract.Ack = {"pod": self.pod, "applied": self.state.applied, "lag_s": self.lag_s()}
            with contextlib.suppress(httpx.HTTPError):
                await self.client.post(self.peer_url(primary) + contract.ACK, json=ack, timeout=2.0)
