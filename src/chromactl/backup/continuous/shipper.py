"""Continuous backup: ship the gateway's journal to the target, within ``max_lag_s``.

A thread of the pod's process. Every ``ship_interval_s`` it reads what the gateway
processes appended to their spool files (:mod:`chromactl.journal`) and writes it as the
next segment of the current epoch (:mod:`.timeline`), then the epoch's head. An epoch
starts with the pod, and needs a base: a snapshot whose cut falls inside it. The shipper
asks the backup service for one when an epoch starts and until one succeeded (a scheduled
backup taken meanwhile serves as well).

A ``break`` entry (a write whose outcome is unknown) ends the epoch at that entry: what
Chroma holds after it cannot be rebuilt from the journal, so a new epoch starts, with a new
base. A target that cannot be written is retried every cycle; the entries wait in the spool
files meanwhile, and the lag metric and alert say so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chromactl.backup.continuous.timeline import Head, Timeline, new_epoch_id
from chromactl.backup.metrics import JournalMetrics
from chromactl.journal import Entry, SpoolReader

log = logging.getLogger("chromactl.backup.shipper")

#: An entry's time is taken just before it is appended; entries older than this before a
#: read of the spool files are all in it.
APPEND_SLACK_S = 1.0
#: An idle epoch's head is rewritten this often (the pod uses ``max_lag_s``), so that a
#: restore to a moment of an idle stretch knows the journal covers it.
HEARTBEAT_S = 5.0
#: A base snapshot that failed is asked for again after this long.
BASE_RETRY_S = 60.0
#: At most this many entries per segment.
SEGMENT_ENTRIES = 20_000


class Shipper:
    """Ships a journal directory to a timeline; :meth:`cycle` once, or :meth:`start`."""

    def __init__(
        self,
        journal_dir: Path,
        timeline: Timeline,
        metrics: JournalMetrics,
        *,
        request_base: Callable[[], None],
        last_cut: Callable[[], float | None],
        interval_s: float = 1.0,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = SpoolReader(journal_dir)
        self.timeline = timeline
        self.metrics = metrics
        self.request_base = request_base
        self.last_cut = last_cut
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.pending: list[Entry] = []
        self.head = self._new_epoch(clock())
        self._head_written = 0.0
        self._head_dirty = True
        #: The newest entry shipped, and how far the head in the target reaches.
        self._last_shipped = 0.0
        self._written_through = 0.0
        self._base_asked = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _new_epoch(started: float) -> Head:
        return Head(new_epoch_id(), started=started, through=started)

    @property
    def has_base(self) -> bool:
        cut = self.last_cut()
        return cut is not None and cut >= self.head.started

    # -- one cycle -----------------------------------------------------------------------
    def cycle(self, *, final: bool = False) -> None:
        """Read the spool files, ship what is new, keep the epoch's base asked for.
        ``final``: the gateway processes have stopped, nothing more will be appended."""
        now = self.clock()
        if not self.pending or final:
            self.pending.extend(self.reader.poll())
            self.pending.sort(key=lambda e: e.key)
        through = now if final else now - APPEND_SLACK_S
        try:
            self._ship(through)
        except Exception as exc:  # the target: retried next cycle
            log.warning("shipping the journal failed (retried in %gs): %s", self.interval_s, exc)
        self._ensure_base(now)
        oldest = self.pending[0].t if self.pending else None
        self.metrics.lag.set(0.0 if oldest is None else max(0.0, self.clock() - oldest))

    def _ship(self, through: float) -> None:
        while self.pending:
            brk = next((i for i, e in enumerate(self.pending) if e.kind == "break"), None)
            batch = self.pending[: brk if brk is not None else SEGMENT_ENTRIES][:SEGMENT_ENTRIES]
            if batch:
                number = self.head.segments + 1
                size = self.timeline.write_segment(self.head.epoch, number, batch)
                self.head.segments = number
                self._head_dirty = True
                self.metrics.entries.inc(len(batch))
                self.metrics.bytes.inc(size)
                self.metrics.last_shipped.set(batch[-1].t)
                self._last_shipped = max(self._last_shipped, batch[-1].t)
                del self.pending[: len(batch)]
                continue
            # The first pending entry is a break: the epoch ends there.
            entry = self.pending.pop(0)
            self._end_epoch(entry)
        self.head.through = max(self.head.through, through)
        # The head is written with each segment, again once its ``through`` passes the newest
        # entry (so a restore can reach that entry), and at least every ``heartbeat_s``.
        uncovered = self._written_through < self._last_shipped <= self.head.through
        if self._head_dirty or uncovered or self.clock() - self._head_written >= self.heartbeat_s:
            self._write_head()

    def _end_epoch(self, entry: Entry) -> None:
        self.head.through = entry.t
        self.head.ended = entry.t
        self.head.reason = entry.reason or "unknown"
        self._write_head()
        log.warning(
            "journal epoch %s ended: %s; a new base snapshot follows", self.head.epoch, self.head.reason
        )
        self.metrics.breaks.inc()
        self.head = self._new_epoch(entry.t)
        self._base_asked = 0.0
        self._head_dirty = True

    def _write_head(self) -> None:
        self.timeline.write_head(self.head)
        self._head_written = self.clock()
        self._written_through = self.head.through
        self._head_dirty = False

    def _ensure_base(self, now: float) -> None:
        if self.has_base or now - self._base_asked < BASE_RETRY_S:
            return
        self._base_asked = now
        log.info("asking for a base snapshot of journal epoch %s", self.head.epoch)
        try:
            self.request_base()
        except Exception as exc:
            log.warning("cannot start a base snapshot: %s", exc)

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="journal-shipper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:
                log.exception("journal shipper cycle failed")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self, timeout: float = 10.0) -> None:
        """Ship what is left and say how far the epoch reaches, then stop (call it once the
        gateway processes have stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._head_dirty = True
            self.cycle(final=True)
        except Exception as exc:
            log.warning("last journal shipment failed: %s", exc)
