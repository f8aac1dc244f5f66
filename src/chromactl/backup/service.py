"""The in-pod backup agent: the gateway takes snapshots itself, holding its own write gate.

Chroma's data volume is ReadWriteOnce, so only a container of Chroma's pod can read
it; the gateway is that container, and the only component that can pause writes. A
scheduled job (the chart's CronJob, ``chromactl backup trigger``) asks it over the
agent API (admin only, like every ``/chromactl/v1`` route)::

    POST /chromactl/v1/backups        {"prune": bool?} -> 202 the run (409 if one is running)
    GET  /chromactl/v1/backups/{id}   -> the run: state, result, error (404 if unknown)
    GET  /chromactl/v1/backups        -> {"running": id | null, "backups": [recent runs]}

A run is ``running``, then ``succeeded`` or ``failed``. The snapshot runs in a worker
thread of the gateway process; its write hold is the gateway's :class:`WriteGate`,
taken through the event loop. Runs are kept in memory (the last
:data:`KEEP_RUNS`): a gateway restart forgets them, and a job following a run that
is forgotten fails.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from chromactl.config import Settings
from chromactl.gateway.routes import AGENT_PREFIX
from chromactl.gateway.writegate import DrainTimeout, Hold, WriteGate

from .agent import run_backup
from .hold import CallbackHold, HoldError, WriteHold
from .metrics import BackupMetrics
from .prune import prune
from .snapshot import BackupResult
from .store import Repository, redact_url

log = logging.getLogger("chromactl.backup.agent")

BACKUPS_PATH = f"{AGENT_PREFIX}/backups"
#: Finished runs remembered for ``GET`` (the running one is always kept).
KEEP_RUNS = 20
#: Extra seconds a worker waits for the event loop beyond the hold timeout.
LOOP_GRACE_S = 30.0

Runner = Callable[[Settings, WriteHold], BackupResult]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class BackupRun:
    """One backup the agent runs: state, then the snapshot's result."""

    backup_id: str
    prune: bool
    started_at: float = field(default_factory=time.time)
    state: str = "running"
    finished_at: float | None = None
    result: BackupResult | None = None
    prune_result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "prune": self.prune,
            "result": self.result.to_dict() if self.result is not None else None,
            "prune_result": self.prune_result,
            "error": self.error,
        }


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


class BackupAgent:
    """Runs one backup at a time in a worker thread; serves the agent routes."""

    def __init__(
        self,
        settings: Settings,
        gate: WriteGate,
        registry: CollectorRegistry,
        *,
        runner: Runner = run_backup,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.metrics = BackupMetrics(registry)
        self._runner = runner
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, BackupRun] = OrderedDict()
        self._current: BackupRun | None = None
        self._threads: list[threading.Thread] = []

    @property
    def configured(self) -> bool:
        return bool(self.settings.backup.target)

    # -- routes ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(BACKUPS_PATH, self._start, methods=["POST"]),
            Route(BACKUPS_PATH, self._list, methods=["GET"]),
            Route(f"{BACKUPS_PATH}/{{backup_id}}", self._get, methods=["GET"]),
        ]

    async def _start(self, request: Request) -> JSONResponse:
        body = await request.body()
        prune_after = False
        if body.strip():
            try:
                data = await request.json()
                prune_after = data.get("prune", False)
            except (ValueError, AttributeError):
                return _error(400, "InvalidArgumentError", 'expected a JSON object like {"prune": true}')
            if not isinstance(prune_after, bool):
                return _error(400, "InvalidArgumentError", '"prune" must be true or false')
        if not self.configured:
            return _error(
                400,
                "BackupNotConfigured",
                "no backup target is configured: set backup.target in the chromactl config "
                "(chart: backup.target)",
            )
        loop = asyncio.get_running_loop()
        with self._lock:
            current = self._current
            if current is not None and current.state == "running":
                return _error(
                    409,
                    "BackupRunning",
                    f"backup {current.backup_id} is running (since {_iso(current.started_at)})",
                    backup_id=current.backup_id,
                )
            run = BackupRun(secrets.token_hex(8), prune_after)
            self._current = run
            self._remember(run)
        thread = threading.Thread(
            target=self._work, args=(run, loop), name=f"backup-{run.backup_id}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return JSONResponse(
            run.to_dict(), status_code=202, headers={"Location": f"{BACKUPS_PATH}/{run.backup_id}"}
        )

    async def _get(self, request: Request) -> JSONResponse:
        backup_id = request.path_params["backup_id"]
        with self._lock:
            run = self._runs.get(backup_id)
            data = run.to_dict() if run is not None else None
        if data is None:
            return _error(
                404,
                "NotFoundError",
                f"backup {backup_id} is unknown (the gateway keeps the last {KEEP_RUNS} runs in "
                "memory; it may have restarted)",
            )
        return JSONResponse(data)

    async def _list(self, request: Request) -> JSONResponse:
        with self._lock:
            runs = [r.to_dict() for r in reversed(self._runs.values())]
            running = self._current.backup_id if self._current and self._current.state == "running" else None
        return JSONResponse({"running": running, "backups": runs})

    def _remember(self, run: BackupRun) -> None:
        self._runs[run.backup_id] = run
        while len(self._runs) > KEEP_RUNS:
            oldest = next(iter(self._runs))
            if self._runs[oldest] is self._current:
                break
            del self._runs[oldest]

    # -- the work ----------------------------------------------------------------------

    def hold(self, loop: asyncio.AbstractEventLoop) -> CallbackHold:
        """The gateway's own write gate as a :class:`WriteHold`, usable from a worker thread."""
        timeout_s = self.settings.backup.hold_timeout_s

        def acquire(timeout: float) -> Hold:
            future = asyncio.run_coroutine_threadsafe(self.gate.hold(timeout, timeout), loop)
            try:
                return future.result(timeout + LOOP_GRACE_S)
            except DrainTimeout as exc:
                raise HoldError(
                    f"could not hold writes: {exc} (backup.hold_timeout_s is {timeout:g}s)"
                ) from None

        def release(token: object) -> None:
            assert isinstance(token, Hold)

            async def end() -> bool:
                return self.gate.release(token.hold_id)

            released = asyncio.run_coroutine_threadsafe(end(), loop).result(LOOP_GRACE_S)
            if not released:
                raise HoldError(
                    f"the write hold ended by itself after {timeout_s:g}s, before the consistent "
                    "copy was done, so the copy may not be consistent: raise backup.hold_timeout_s "
                    "(chart: backup.holdTimeoutSeconds)"
                )

        return CallbackHold(acquire, release, timeout_s=timeout_s)

    def _work(self, run: BackupRun, loop: asyncio.AbstractEventLoop) -> None:
        log.info("backup %s started", run.backup_id, extra={"backup_id": run.backup_id})
        error: str | None = None
        result: BackupResult | None = None
        prune_result: dict[str, Any] | None = None
        try:
            result = self._runner(self.settings, self.hold(loop))
            self.metrics.observe(result)
            if result.outcome != "success":
                error = result.error or "backup failed"
            elif run.prune:
                prune_result = self._prune()
        except Exception as exc:  # the run must end in a state, whatever happened
            error = f"{type(exc).__name__}: {exc}"
            if result is not None and result.outcome == "success":
                error = f"snapshot {result.snapshot_id} was taken, but pruning failed: {error}"
            elif result is None:
                self.metrics.observe(BackupResult(outcome="failure", error=error))
        with self._lock:
            run.result = result
            run.prune_result = prune_result
            run.error = error
            run.finished_at = time.time()
            run.state = "failed" if error else "succeeded"
        if error:
            log.error("backup %s failed: %s", run.backup_id, error, extra={"backup_id": run.backup_id})
        else:
            assert result is not None
            log.info(
                "backup %s: snapshot %s, %d bytes stored, writes held %.1f ms, %.1f s",
                run.backup_id,
                result.snapshot_id,
                result.stored_bytes,
                result.hold_s * 1000,
                result.duration_s,
                extra={"backup_id": run.backup_id, "snapshot_id": result.snapshot_id},
            )

    def _prune(self) -> dict[str, Any]:
        backup = self.settings.backup
        outcome = prune(Repository.from_settings(backup), backup.retention).to_dict()
        log.info(
            "pruned %d snapshot(s) and %d incomplete one(s) in %s",
            len(outcome["removed"]),
            len(outcome["removed_incomplete"]),
            redact_url(backup.target),
        )
        return outcome

    # -- start-up ----------------------------------------------------------------------

    def seed_metrics(self) -> None:
        """Set the "last backup" gauges from the newest complete snapshot in the target.

        Runs in a background thread at start-up, so a restarted gateway reports when
        the last backup was taken; a target that cannot be read is only logged.
        """
        if not self.configured:
            return

        def seed() -> None:
            try:
                done = Repository.from_settings(self.settings.backup).complete()
            except Exception as exc:
                log.warning("cannot read the backup target to report the last backup: %s", exc)
                return
            if not done or done[-1].manifest is None:
                return
            manifest = done[-1].manifest
            created = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00")).timestamp()
            self.metrics.seed(finished_at=created, stored_bytes=manifest.stored_size)

        threading.Thread(target=seed, name="backup-metrics-seed", daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker threads (tests, shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout)
