"""One write hold over every gateway worker: the supervisor's side and the worker's side.

Each worker keeps its own :class:`~chromactl.gateway.hold_gate.WriteGate` (writes wait at
the worker that received them). The supervisor holds all of them through a control
connection per worker, a Unix socket speaking JSON lines::

    worker -> supervisor  {"op": "hello", "pid": N}
    supervisor -> worker  {"holds": [{"hold_id": H, "remaining_s": S}]}   (applied before serving)
    supervisor -> worker  {"id": I, "op": "hold", "hold_id": H, "timeout_s": T, "drain_timeout_s": D,
                           "quiet_s": Q}
    worker -> supervisor  {"id": I, "ok": true, "waited_s": W, "quiet_s": Q}
                          | {"id": I, "ok": false, "message": M}
    supervisor -> worker  {"id": I, "op": "release", "hold_id": H}  -> {"id": I, "ok": true, "released": B}
    supervisor -> worker  {"id": I, "op": "in_flight"}              -> {"id": I, "ok": true, "in_flight": N}

A hold is granted once every connected worker has closed its gate and drained its
writes in flight. A worker that connects during a hold gets the hold before it serves
anything; a worker that dies before it reported drained fails the hold (a write it
forwarded may still be running in Chroma); one that dies after cannot admit a write,
and its replacement starts held. Every worker's own hold ends by itself at the same
timeout, so a supervisor that dies cannot leave writes blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chromactl.gateway.hold_gate import DrainTimeout, Hold, WriteGate, end_hold

log = logging.getLogger("chromactl.pod.control")

#: Seconds beyond the drain timeout a worker may take to answer a hold.
ANSWER_GRACE_S = 5.0
#: Seconds a worker may take to say how many writes it has in flight.
COUNT_ANSWER_S = 1.0


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class WorkerGone(Exception):
    """The worker's control connection closed."""


class _Worker:
    """The supervisor's end of one worker's control connection."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = pid
        self._reader = reader
        self._writer = writer
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        if self.closed.is_set():
            raise WorkerGone(f"worker {self.pid} is gone")
        self._next += 1
        call_id = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._writer.write(_line({"id": call_id, "op": op, **args}))
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def read_answers(self) -> None:
        try:
            while line := await self._reader.readline():
                answer = json.loads(line)
                future = self._pending.get(answer.get("id"))
                if future is not None and not future.done():
                    future.set_result(answer)
        except (ConnectionError, ValueError) as exc:
            log.warning("control connection of worker %d broke: %s", self.pid, exc)
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(WorkerGone(f"worker {self.pid} is gone"))
            self._writer.close()


class WorkersGate:
    """The supervisor's write gate: a hold on it is a hold on every worker's gate.

    It serves the agent API's hold routes and the backup service exactly as a single
    gateway's :class:`WriteGate` does (``hold``, ``release``, ``holds``, ``writes_in_flight``).
    """

    def __init__(self) -> None:
        self._workers: dict[int, _Worker] = {}
        self._holds: dict[str, Hold] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- workers connect ---------------------------------------------------------------

    async def serve(self, path: Path) -> asyncio.AbstractServer:
        """Accept worker control connections on the Unix socket ``path``."""
        return await asyncio.start_unix_server(self._connected, path=str(path))

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = json.loads(await reader.readline() or b"{}")
        if hello.get("op") != "hello":
            writer.close()
            return
        worker = _Worker(int(hello["pid"]), reader, writer)
        # In the same step as joining: every worker either is asked by a hold being
        # granted or starts with it.
        now = asyncio.get_running_loop().time()
        holds = [{"hold_id": h.hold_id, "remaining_s": h.expires_at - now} for h in self._holds.values()]
        self._workers[worker.pid] = worker
        writer.write(_line({"holds": holds}))
        log.info("worker %d joined (%d worker(s))", worker.pid, len(self._workers))
        try:
            await worker.read_answers()
        finally:
            if self._workers.get(worker.pid) is worker:
                del self._workers[worker.pid]
            log.info("worker %d left (%d worker(s))", worker.pid, len(self._workers))

    # -- the gate ----------------------------------------------------------------------

    def holds(self) -> list[Hold]:
        return list(self._holds.values())

    async def writes_in_flight(self) -> int:
        """Writes in flight in the workers that answer within :data:`COUNT_ANSWER_S` (a hung
        worker is left out rather than hang the listing)."""
        answers = await asyncio.gather(
            *(asyncio.wait_for(w.call("in_flight"), COUNT_ANSWER_S) for w in list(self._workers.values())),
            return_exceptions=True,
        )
        return sum(int(a["in_flight"]) for a in answers if isinstance(a, dict))

    async def hold(
        self, timeout_s: float, drain_timeout_s: float | None = None, quiet_s: float = 0.0
    ) -> Hold:
        """Close every worker's gate and wait until each has drained (see the module doc).
        With ``quiet_s``, each worker closes at its own first moment with no write in flight
        (or after ``quiet_s``)."""
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        loop = asyncio.get_running_loop()
        start = loop.time()
        hold = Hold(secrets.token_hex(8), 0.0, start + timeout_s)
        self._holds[hold.hold_id] = hold
        hold._timer = loop.call_later(timeout_s, self.release, hold.hold_id)
        drain_s = drain_timeout_s or timeout_s
        workers = list(self._workers.values())
        calls = [
            w.call(
                "hold", hold_id=hold.hold_id, timeout_s=timeout_s, drain_timeout_s=drain_s, quiet_s=quiet_s
            )
            for w in workers
        ]
        try:
            # A worker answers within drain_s (its own gate's drain timeout); one that does
            # not answer at all is hung, and the hold fails rather than wait for it.
            answer_s = quiet_s + drain_s + ANSWER_GRACE_S
            answers = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), answer_s)
        except TimeoutError:
            self.release(hold.hold_id)
            raise DrainTimeout(f"a worker did not answer within {answer_s:g}s") from None
        except BaseException:
            self.release(hold.hold_id)
            raise
        failed = [
            f"worker {w.pid}: {a if isinstance(a, BaseException) else a.get('message')}"
            for w, a in zip(workers, answers, strict=True)
            if isinstance(a, BaseException) or not a.get("ok")
        ]
        if failed:
            self.release(hold.hold_id)
            raise DrainTimeout("; ".join(failed))
        # Writes were held from the first worker's close: its quiet wait did not hold any.
        quiet_waits = [float(a.get("quiet_s", 0.0)) for a in answers if isinstance(a, dict)]
        hold.waited_s = loop.time() - start - min(quiet_waits, default=0.0)
        return hold

    def release(self, hold_id: str) -> bool:
        """End a hold on every worker; False if it had already ended."""
        if not end_hold(self._holds, hold_id):
            return False
        for worker in list(self._workers.values()):
            task = asyncio.ensure_future(self._release_on(worker, hold_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    @staticmethod
    async def _release_on(worker: _Worker, hold_id: str) -> None:
        with contextlib.suppress(WorkerGone):
            await worker.call("release", hold_id=hold_id)


class WorkerControl:
    """A worker's end: applies the supervisor's holds to this worker's gate."""

    def __init__(self, gate: WriteGate, path: Path, *, on_lost: Callable[[], None]) -> None:
        self._gate = gate
        self._path = path
        self._on_lost = on_lost
        #: Supervisor hold id -> this gate's hold id.
        self._local: dict[str, str] = {}
        #: Supervisor hold id -> the task still draining for it.
        self._granting: dict[str, asyncio.Task[tuple[float, float]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, pid: int) -> asyncio.Task[None]:
        """Join the supervisor and take the holds it has now; then follow it in a task."""
        reader, writer = await asyncio.open_unix_connection(str(self._path))
        self._writer = writer
        writer.write(_line({"op": "hello", "pid": pid}))
        welcome = json.loads(await reader.readline() or b"{}")
        for h in welcome.get("holds", []):
            if h["remaining_s"] > 0:
                await self._hold(h["hold_id"], h["remaining_s"], h["remaining_s"])
        return asyncio.create_task(self._follow(reader))

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                task = asyncio.create_task(self._answer(json.loads(line)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            log.warning("lost the supervisor's control connection")
            self._on_lost()

    async def _answer(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        answer: dict[str, Any] = {"id": request.get("id"), "ok": True}
        if op == "hold":
            hold_id = request["hold_id"]
            quiet_s = float(request.get("quiet_s", 0.0))
            granting = asyncio.ensure_future(
                self._hold(hold_id, float(request["timeout_s"]), float(request["drain_timeout_s"]), quiet_s)
            )
            self._granting[hold_id] = granting
            try:
                answer["waited_s"], answer["quiet_s"] = await granting
            except DrainTimeout as exc:
                answer = {"id": request.get("id"), "ok": False, "message": str(exc)}
            except asyncio.CancelledError:
                answer = {"id": request.get("id"), "ok": False, "message": "released while draining"}
            finally:
                self._granting.pop(hold_id, None)
        elif op == "release":
            hold_id = request["hold_id"]
            local = self._local.pop(hold_id, None)
            draining = self._granting.get(hold_id)
            if draining is not None:
                draining.cancel()  # the gate gives the hold back (WriteGate.hold)
            answer["released"] = self._gate.release(local) if local else draining is not None
        elif op == "in_flight":
            answer["in_flight"] = self._gate.in_flight
        else:
            answer = {"id": request.get("id"), "ok": False, "message": f"unknown op {op!r}"}
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_line(answer))

    async def _hold(
        self, hold_id: str, timeout_s: float, drain_timeout_s: float, quiet_s: float = 0.0
    ) -> tuple[float, float]:
        """This worker's part of a hold: (seconds drained, seconds waited for a quiet moment)."""
        hold = await self._gate.hold(timeout_s, drain_timeout_s, quiet_s)
        self._local[hold_id] = hold.hold_id
        return hold.waited_s, hold.quiet_s
