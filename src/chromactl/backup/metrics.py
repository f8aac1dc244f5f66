"""Prometheus metrics of the backups the pod's backup service runs, on the gateway's registry.

Names (alerts and dashboards are built on them; keep them stable):

- ``chromactl_backup_last_success_timestamp_seconds`` (gauge): end of the newest
  successful snapshot, Unix time.
- ``chromactl_backup_last_outcome`` (gauge): 1 when the last backup succeeded, 0 when
  it failed.
- ``chromactl_backup_runs_total{outcome}`` (counter): backups run, ``success`` or
  ``failure``.
- ``chromactl_backup_duration_seconds`` (histogram): how long each backup took.
- ``chromactl_backup_size_bytes`` (gauge): bytes stored by the last successful snapshot.
- ``chromactl_backup_hold_seconds`` (histogram): how long each backup held writes.
- ``chromactl_backup_holds_given_back_total`` (counter): holds given back before a cut,
  because a large vector segment persisted meanwhile (each a short wait for writes).

The three gauges are absent until they are known: after the first backup this process
ran, or once the service has found the newest complete snapshot in the target at start-up
(so a restarted gateway does not look like a missed backup).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.snapshot.create import BackupResult

#: Whole backups: seconds to hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
#: Write holds: the goal is at most 100 ms.
HOLD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
OUTCOMES = ("success", "failure")


class _LastBackup(Collector):
    """The gauges, exported only once their value is known."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.success_ts: float | None = None
        self.outcome: int | None = None
        self.size: int | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = (self.success_ts, self.outcome, self.size)
        for (name, doc), value in zip(
            [
                (
                    "chromactl_backup_last_success_timestamp_seconds",
                    "Unix time at which the newest successful backup finished.",
                ),
                ("chromactl_backup_last_outcome", "1 if the last backup succeeded, 0 if it failed."),
                ("chromactl_backup_size_bytes", "Bytes stored by the last successful snapshot."),
            ],
            values,
            strict=True,
        ):
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class BackupMetrics:
    """The backup metrics, registered on ``registry`` (the gateway's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._last = _LastBackup()
        registry.register(self._last)
        self.runs = Counter(
            "chromactl_backup_runs",
            "Backups run in the pod, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.runs.labels(outcome)
        self.duration = Histogram(
            "chromactl_backup_duration_seconds",
            "Time each backup took, from start to manifest written (or failure).",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.hold = Histogram(
            "chromactl_backup_hold_seconds",
            "Time each backup held Chroma's writes (its consistent cut).",
            buckets=HOLD_BUCKETS,
            registry=registry,
        )

        self.given_back = Counter(
            "chromactl_backup_holds_given_back",
            "Write holds given back before a cut: a large vector segment persisted since its catch-up.",
            registry=registry,
        )

    def observe(self, result: BackupResult, *, finished_at: float | None = None) -> None:
        """Record one backup run."""
        success = result.outcome == "success"
        self.runs.labels("success" if success else "failure").inc()
        self.duration.observe(result.duration_s)
        if result.hold_s > 0:
            self.hold.observe(result.hold_s)
        self.given_back.inc(result.holds_given_back)
        with self._last._lock:
            self._last.outcome = 1 if success else 0
            if success:
                self._last.success_ts = finished_at if finished_at is not None else time.time()
                self._last.size = result.stored_bytes

    def seed(self, *, finished_at: float, stored_bytes: int) -> None:
        """Known from the target at start-up: the newest complete snapshot.

        Never overwrites what a backup run of this process already recorded.
        """
        with self._last._lock:
            if self._last.outcome is not None:
                return
            self._last.success_ts = finished_at
            self._last.size = stored_bytes
            self._last.outcome = 1


class JournalMetrics:
    """Continuous backup (:mod:`.shipper`):

    - ``chromactl_backup_journal_lag_seconds`` (gauge): age of the oldest journal entry not
      yet in the target (0 when all are); the recovery point, as far as the pod can tell.
    - ``chromactl_backup_journal_last_shipped_timestamp_seconds`` (gauge): time of the newest
      entry in the target.
    - ``chromactl_backup_journal_entries_total`` / ``_bytes_total`` (counters): shipped.
    - ``chromactl_backup_journal_breaks_total`` (counter): epochs ended by a write whose
      outcome is unknown; each starts a new base snapshot.
    - ``chromactl_backup_journal_max_lag_seconds`` (gauge): the goal (``max_lag_s``), for
      the alert.
    """

    def __init__(self, registry: CollectorRegistry, max_lag_s: float) -> None:
        self.lag = Gauge(
            "chromactl_backup_journal_lag_seconds",
            "Age of the oldest acknowledged write not yet shipped to the backup target.",
            registry=registry,
        )
        self.last_shipped = Gauge(
            "chromactl_backup_journal_last_shipped_timestamp_seconds",
            "Unix time of the newest journal entry in the backup target.",
            registry=registry,
        )
        self.entries = Counter(
            "chromactl_backup_journal_entries",
            "Journal entries shipped to the backup target.",
            registry=registry,
        )
        self.bytes = Counter(
            "chromactl_backup_journal_bytes",
            "Compressed journal bytes shipped to the backup target.",
            registry=registry,
        )
        self.breaks = Counter(
            "chromactl_backup_journal_breaks",
            "Journal epochs ended by a write whose outcome is unknown (a new base snapshot follows).",
            registry=registry,
        )
        Gauge(
            "chromactl_backup_journal_max_lag_seconds",
            "The recovery point goal of continuous backup (backup.continuous.max_lag_s).",
            registry=registry,
        ).set(max_lag_s)


class CopyMetrics:
    """Off-site copies (:mod:`.copies`), one series per configured target (bounded by the config):

    - ``chromactl_backup_copy_last_success_timestamp_seconds{target}`` (gauge)
    - ``chromactl_backup_copy_last_outcome{target}`` (gauge): 1 succeeded, 0 failed
    - ``chromactl_backup_copy_runs_total{target, outcome}`` (counter)
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_success = Gauge(
            "chromactl_backup_copy_last_success_timestamp_seconds",
            "Unix time at which the newest successful copy to a target finished.",
            ["target"],
            registry=registry,
        )
        self.last_outcome = Gauge(
            "chromactl_backup_copy_last_outcome",
            "1 if the last copy to a target succeeded, 0 if it failed.",
            ["target"],
            registry=registry,
        )
        self.runs = Counter(
            "chromactl_backup_copy_runs",
            "Copies to a target, by outcome.",
            ["target", "outcome"],
            registry=registry,
        )

    def observe(self, target: str, success: bool) -> None:
        self.runs.labels(target, "success" if success else "failure").inc()
        self.last_outcome.labels(target).set(1 if success else 0)
        if success:
            self.last_success.labels(target).set(time.time())


class RepositoryMetrics:
    """What the target holds, read after each backup and at start-up:

    - ``chromactl_backup_last_failure_timestamp_seconds`` (gauge): the newest failed backup
      of this process;
    - ``chromactl_backup_earliest_recoverable_timestamp_seconds`` (gauge): the oldest point a
      restore reaches (the oldest complete snapshot);
    - ``chromactl_backup_repository_bytes`` (gauge): bytes the complete snapshots store: each
      chunk of the chunk store once, however many snapshots share it (:func:`repository_sizes`);
    - ``chromactl_backup_repository_logical_bytes`` (gauge): the sum of the complete snapshots'
      data directory sizes, as if each were stored whole (this over the stored bytes is the
      deduplication ratio).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_failure = Gauge(
            "chromactl_backup_last_failure_timestamp_seconds",
            "Unix time at which the newest failed backup of this process ended.",
            registry=registry,
        )
        self.earliest = Gauge(
            "chromactl_backup_earliest_recoverable_timestamp_seconds",
            "The oldest point in time a restore from the target reaches.",
            registry=registry,
        )
        self.size = Gauge(
            "chromactl_backup_repository_bytes",
            "Bytes stored by the complete snapshots in the target, each shared chunk once.",
            registry=registry,
        )
        self.logical = Gauge(
            "chromactl_backup_repository_logical_bytes",
            "Sum of the sizes of the data directories the complete snapshots hold.",
            registry=registry,
        )

    def measure(self, manifests: list[Manifest]) -> None:
        """Set the size gauges from the complete snapshots' manifests."""
        logical, stored = repository_sizes(manifests)
        self.size.set(stored)
        self.logical.set(logical)


def repository_sizes(manifests: list[Manifest]) -> tuple[int, int]:
    """(logical, stored) bytes of these snapshots, from their manifests alone: logical is the
    sum of their files' sizes; stored counts each chunk once (format 3) and each object of a
    format 1 or 2 snapshot."""
    logical = sum(m.total_size for m in manifests)
    chunks: dict[str, int] = {}
    stored = 0
    for manifest in manifests:
        for entry in manifest.files:
            if entry.chunks is None:
                stored += entry.stored_size
                continue
            chunks.update(zip(entry.chunks, entry.chunk_sizes or [0] * len(entry.chunks), strict=True))
    return logical, stored + sum(chunks.values())


class DrillMetrics:
    """Restore drills (:mod:`.drill`), as they report to the agent API:

    - ``chromactl_backup_drill_last_success_timestamp_seconds`` (gauge): the newest drill that
      passed; absent until one has;
    - ``chromactl_backup_drill_last_outcome`` (gauge): 1 passed, 0 failed;
    - ``chromactl_backup_drill_runs_total{outcome}`` (counter).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_success = Gauge(
            "chromactl_backup_drill_last_success_timestamp_seconds",
            "Unix time at which the newest restore drill that passed finished.",
            registry=registry,
        )
        self.last_outcome = Gauge(
            "chromactl_backup_drill_last_outcome",
            "1 if the last restore drill passed, 0 if it failed.",
            registry=registry,
        )
        self.runs = Counter(
            "chromactl_backup_drill_runs",
            "Restore drills reported, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.runs.labels(outcome)
        self._known = False

    def observe(self, success: bool, finished_at: float) -> None:
        self.runs.labels("success" if success else "failure").inc()
        self.last_outcome.set(1 if success else 0)
        if success:
            self.last_success.set(finished_at)
        self._known = True

    def seed(self, passed_at: float) -> None:
        """The newest passing drill the target records (a restarted gateway), unless this
        process has had a report already."""
        if not self._known:
            self.last_success.set(passed_at)
