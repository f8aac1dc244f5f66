"""The backup service: snapshots taken in Chroma's pod, on request over the agent API.

Chroma's data volume is ReadWriteOnce, so only a container of Chroma's pod can read
it; the chromactl process there serves the agent API (:mod:`chromactl.agentapi`),
and a scheduled job (the chart's CronJob, ``chromactl backup trigger``) asks it for
a snapshot. A run is ``running``, then ``succeeded`` or ``failed``. The snapshot runs
in a worker thread; its write hold comes from the ``hold`` factory the pod gives
(the gateway's write gate, reached through the event loop). Runs are kept in memory
(the last :data:`KEEP_RUNS`): a restart forgets them, and a job following a run that
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

from chromactl.agentapi import contract
from chromactl.agentapi.contract import BackupListing, BackupState, BackupStatus
from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.metrics import BackupMetrics, CopyMetrics, DrillMetrics, RepositoryMetrics
from chromactl.backup.operations.copies import copy_all
from chromactl.backup.operations.prune import prune
from chromactl.backup.recovery.drill import last_success
from chromactl.backup.recovery.replay import restorable
from chromactl.backup.repository.repository import SnapshotInfo, repository_of
from chromactl.backup.snapshot.create import BackupResult
from chromactl.backup.snapshot.hold import WriteHold
from chromactl.backup.snapshot.run import run_backup
from chromactl.config import Settings
from chromactl.storage import redact_url

log = logging.getLogger("chromactl.backup.service")

#: Finished runs remembered for ``GET`` (the running one is always kept).
KEEP_RUNS = 20

Runner = Callable[[Settings, WriteHold], BackupResult]
#: The write hold for one run, given the event loop that serves the agent API.
HoldFactory = Callable[[asyncio.AbstractEventLoop], WriteHold]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class BackupRun:
    """One backup the service runs: state, then the snapshot's result."""

    backup_id: str
    prune: bool
    started_at: float = field(default_factory=time.time)
    state: BackupState = "running"
    finished_at: float | None = None
    result: BackupResult | None = None
    prune_result: dict[str, Any] | None = None
    copies: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> BackupStatus:
        return {
            "backup_id": self.backup_id,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "prune": self.prune,
            "result": self.result.to_dict() if self.result is not None else None,
            "prune_result": self.prune_result,
            "copies": self.copies,
            "error": self.error,
        }


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


class BackupService:
    """Runs one backup at a time in a worker thread; serves the backup routes of the agent API."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        hold: HoldFactory,
        *,
        runner: Runner = run_backup,
    ) -> None:
        self.settings = settings
        self._hold = hold
        self._registry = registry
        self.metrics = BackupMetrics(registry)
        self.copy_metrics = CopyMetrics(registry)
        self.drill_metrics = DrillMetrics(registry)
        self._drills: list[dict[str, Any]] = []
        self.repository_metrics = RepositoryMetrics(registry)
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
            Route(contract.BACKUPS, self._start, methods=["POST"]),
            Route(contract.BACKUPS, self._list, methods=["GET"]),
            Route(contract.backup_path("{backup_id}"), self._get, methods=["GET"]),
            Route(contract.DRILLS, self._report_drill, methods=["POST"]),
            Route(contract.DRILLS, self._list_drills, methods=["GET"]),
            Route(contract.SNAPSHOTS, self._list_snapshots, methods=["GET"]),
        ]

    async def _list_snapshots(self, request: Request) -> JSONResponse:
        """The repository's complete snapshots and the points in time it can restore."""
        return JSONResponse(await asyncio.to_thread(self.snapshot_listing))

    def snapshot_listing(self) -> contract.SnapshotListing:
        lag = self._registry.get_sample_value("chromactl_backup_journal_lag_seconds")
        listing: contract.SnapshotListing = {
            "configured": self.configured,
            "snapshots": [],
            "restorable": [],
            "journal_lag_s": lag if self.settings.backup.continuous.enabled else None,
            "error": None,
        }
        if not self.configured:
            return listing
        try:
            repo = repository_of(self.settings.backup)
            complete = [s for s in repo.complete() if s.manifest is not None]
            heads = Timeline(repo).epochs() if self.settings.backup.continuous.enabled else []
        except Exception as exc:
            listing["error"] = f"{redact_url(self.settings.backup.target)}: {exc}"
            return listing
        bases = [s.manifest for s in complete if s.manifest is not None]
        listing["restorable"] = [{"start": a, "end": b} for a, b in restorable(bases, heads)]
        for snap in sorted(complete, key=lambda s: s.manifest.created_at if s.manifest else "", reverse=True):
            m = snap.manifest
            assert m is not None
            listing["snapshots"].append(
                {
                    "snapshot_id": snap.snapshot_id,
                    "created_at": m.created_at,
                    "cut_at": m.cut_at,
                    "bytes": m.total_size,
                    "stored_bytes": m.stored_size,
                    "chunks": len(m.chunk_hashes()),
                    "records": m.record_count,
                    "collections": len(m.collections),
                }
            )
        return listing

    async def _report_drill(self, request: Request) -> JSONResponse:
        """A restore drill's result (the chart's drill Job, ``chromactl backup drill``)."""
        try:
            data = await request.json()
            outcome = data["outcome"]
            finished_at = float(data.get("finished_at") or time.time())
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(
                400, "InvalidArgumentError", 'expected a drill result like {"outcome": "success", ...}'
            )
        if outcome not in ("success", "failure"):
            return _error(400, "InvalidArgumentError", '"outcome" is "success" or "failure"')
        self.drill_metrics.observe(outcome == "success", finished_at)
        with self._lock:
            self._drills = [data, *self._drills][:KEEP_RUNS]
        log_drill = log.info if outcome == "success" else log.error
        log_drill(
            "restore drill of %s: %s %s",
            data.get("snapshot_id"),
            outcome,
            "; ".join(data.get("problems", [])),
        )
        return JSONResponse({"recorded": True}, status_code=201)

    async def _list_drills(self, request: Request) -> JSONResponse:
        with self._lock:
            return JSONResponse({"drills": list(self._drills)})

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
        run = self.start(asyncio.get_running_loop(), prune_after)
        if isinstance(run, str):
            current = self._runs[run]
            return _error(
                409,
                "BackupRunning",
                f"backup {current.backup_id} is running (since {_iso(current.started_at)})",
                backup_id=current.backup_id,
            )
        return JSONResponse(
            run.to_dict(), status_code=202, headers={"Location": contract.backup_path(run.backup_id)}
        )

    def start(self, loop: asyncio.AbstractEventLoop, prune_after: bool = False) -> BackupRun | str:
        """Start a backup in a worker thread; the id of the running one if there is one."""
        with self._lock:
            current = self._current
            if current is not None and current.state == "running":
                return current.backup_id
            run = BackupRun(secrets.token_hex(8), prune_after)
            self._current = run
            self._remember(run)
        thread = threading.Thread(
            target=self._work, args=(run, loop), name=f"backup-{run.backup_id}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return run

    def last_cut_at(self) -> float | None:
        """The cut of the newest snapshot this process took, if any (Unix time)."""
        with self._lock:
            cuts = [r.result.cut_at for r in self._runs.values() if r.result is not None and r.result.cut_at]
        return max(cuts, default=None)

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
        listing: BackupListing = {"running": running, "backups": runs}
        return JSONResponse(listing)

    def _remember(self, run: BackupRun) -> None:
        self._runs[run.backup_id] = run
        while len(self._runs) > KEEP_RUNS:
            oldest = next(iter(self._runs))
            if self._runs[oldest] is self._current:
                break
            del self._runs[oldest]

    # -- the work ----------------------------------------------------------------------

    def _work(self, run: BackupRun, loop: asyncio.AbstractEventLoop) -> None:
        log.info("backup %s started", run.backup_id, extra={"backup_id": run.backup_id})
        error: str | None = None
        result: BackupResult | None = None
        prune_result: dict[str, Any] | None = None
        copies: list[dict[str, Any]] = []
        try:
            result = self._runner(self.settings, self._hold(loop))
            self.metrics.observe(result)
            if result.outcome != "success":
                error = result.error or "backup failed"
                self.repository_metrics.last_failure.set(time.time())
            else:
                if run.prune:
                    prune_result = self._prune()
                copies = self._copy()
                self._measure_repository()
        except Exception as exc:  # the run must end in a state, whatever happened
            error = f"{type(exc).__name__}: {exc}"
            if result is not None and result.outcome == "success":
                error = f"snapshot {result.snapshot_id} was taken, but pruning failed: {error}"
            elif result is None:
                self.metrics.observe(BackupResult(outcome="failure", error=error))
                self.repository_metrics.last_failure.set(time.time())
        with self._lock:
            run.result = result
            run.prune_result = prune_result
            run.copies = copies
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

    def _copy(self) -> list[dict[str, Any]]:
        """The off-site copies (``backup.copies``) brought up to date; never raises."""
        results = copy_all(self.settings.backup)
        for copy in results:
            self.copy_metrics.observe(copy.target, copy.outcome == "success")
        return [c.to_dict() for c in results]

    def _measure_repository(self, done: list[SnapshotInfo] | None = None) -> None:
        """Earliest recoverable point and stored bytes of the primary target."""
        if done is None:
            try:
                done = repository_of(self.settings.backup).complete()
            except Exception as exc:
                log.warning("cannot read the backup target to measure it: %s", exc)
                return
        manifests = [s.manifest for s in done if s.manifest is not None]
        if manifests:
            oldest = manifests[0]
            at = oldest.cut_at or datetime.fromisoformat(oldest.created_at.replace("Z", "+00:00")).timestamp()
            self.repository_metrics.earliest.set(at)
            self.repository_metrics.measure(manifests)

    def _prune(self) -> dict[str, Any]:
        backup = self.settings.backup
        outcome = prune(repository_of(backup), backup.retention).to_dict()
        log.info(
            "pruned %d snapshot(s), %d incomplete one(s) and %d chunk(s) (%d bytes) in %s",
            len(outcome["removed"]),
            len(outcome["removed_incomplete"]),
            outcome["removed_chunks"],
            outcome["removed_chunk_bytes"],
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
                done = repository_of(self.settings.backup).complete()
            except Exception as exc:
                log.warning("cannot read the backup target to report the last backup: %s", exc)
                return
            self._measure_repository(done)
            drilled = last_success(repository_of(self.settings.backup))
            if drilled is not None:
                self.drill_metrics.seed(drilled)
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
