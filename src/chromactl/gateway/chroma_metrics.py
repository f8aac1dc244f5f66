"""Chroma's internals as metrics, read from its data directory without blocking it.

A background thread wakes every ``interval_s`` and reads, read-only:

- ``chroma.sqlite3`` opened with ``mode=ro`` and no busy wait (a locked database skips
  the round and keeps the last values): collections, records per collection, the write
  log (``embeddings_queue``) depth and the records not yet persisted in the vector segment;
- file sizes (SQLite, every segment directory) and the volume's free space;
- Chroma's liveness (``/api/v2/heartbeat``) and readiness (``/api/v2/healthcheck``);
- the expiry of the gateway's TLS certificate.

Scrapes only read the cached result: a scrape never touches SQLite or Chroma.
Per-collection series are bounded: the ``collection_series`` largest collections keep
their own labels, every other one is summed into ``collection="__other__"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chromactl.chromadata import (
    COLLECTIONS_SQL,
    LOG_SQL,
    MAX_SEQ_SQL,
    RECORDS_SQL,
    SEGMENTS_SQL,
    SQLITE_NAME,
)
from chromactl.gateway.labels import OTHER, clip, top_n

log = logging.getLogger("chromactl.gateway.internals")

DEFAULT_COLLECTION_SERIES = 50

#: Longest a single read may hold SQLite's shared lock (a Chroma commit waits for it).
DEFAULT_READ_BUDGET_S = 0.1


@dataclass(frozen=True)
class CollectionStats:
    tenant: str
    database: str
    name: str
    records: int = 0
    log_depth: int = 0
    unpersisted: int = 0


@dataclass
class Snapshot:
    """The last values read; ``None`` where a value could not be read."""

    collections: list[CollectionStats] = field(default_factory=list)
    sqlite_ok: bool = False
    sqlite_bytes: float | None = None
    segment_bytes: float | None = None
    volume_free_bytes: float | None = None
    volume_size_bytes: float | None = None
    chroma_up: float = 0.0
    chroma_ready: float = 0.0
    cert_expiry: float | None = None
    last_success: float | None = None
    duration_s: float = 0.0


class ReadBudgetExceeded(Exception):
    """A read took longer than its budget and was interrupted."""


#: collection id -> (the metadata segment's max_seq_id when counted, records)
RecordCache = dict[str, tuple[int, int]]


class _Reader:
    """A read-only connection whose statements each get ``budget_s`` at most."""

    def __init__(self, db_file: Path, budget_s: float) -> None:
        self.db = sqlite3.connect(
            f"file:{db_file}?mode=ro", uri=True, timeout=0, isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA query_only = 1")
        self.budget_s = budget_s
        self.deadline = 0.0
        self.db.set_progress_handler(self._over_budget, 1000)

    def _over_budget(self) -> int:
        return int(time.perf_counter() > self.deadline)

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        """One statement in its own read transaction (autocommit), interrupted past the budget."""
        self.deadline = time.perf_counter() + self.budget_s
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise ReadBudgetExceeded(sql) from None
            raise

    def close(self) -> None:
        self.db.close()


def read_sqlite(
    db_file: Path, cache: RecordCache | None = None, *, budget_s: float = DEFAULT_READ_BUDGET_S
) -> tuple[list[CollectionStats], RecordCache, int]:
    """Per-collection counts, read-only, never waiting for Chroma's locks.

    Each statement runs alone (autocommit), so SQLite's shared lock is held for one short
    statement at a time, and at most ``budget_s``: a longer one is interrupted. Records are
    recounted only for collections whose metadata segment moved since ``cache``; a count
    over the budget keeps the cached value. Returns the stats, the new cache and how many
    counts went over the budget.
    """
    cache = cache or {}
    db = _Reader(db_file, budget_s)
    try:
        cols = db.read(COLLECTIONS_SQL)
        segments = db.read(SEGMENTS_SQL)
        max_seq = {str(sid): int(seq or 0) for sid, seq in db.read(MAX_SEQ_SQL)}
        log_of = {str(cid): (int(depth), int(tail or 0)) for cid, depth, tail in db.read(LOG_SQL)}
        metadata_of = {str(coll): str(sid) for sid, scope, coll in segments if scope == "METADATA"}
        out = []
        new_cache: RecordCache = {}
        slow = 0
        for cid, name, dbname, tenant in cols:
            cid = str(cid)
            segment = metadata_of.get(cid, "")
            seq = max_seq.get(segment, 0)
            known = cache.get(cid)
            if known is not None and known[0] == seq:
                records = known[1]
            else:
                try:
                    records = int(db.read(RECORDS_SQL, (segment,))[0][0])
                except ReadBudgetExceeded:
                    slow += 1
                    records = known[1] if known is not None else 0
                    seq = known[0] if known is not None else -1
            new_cache[cid] = (seq, records)
            depth, tail = log_of.get(cid, (0, 0))
            out.append(CollectionStats(str(tenant), str(dbname), str(name), records, depth, tail))
        return out, new_cache, slow
    finally:
        db.close()


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total


def cert_not_after(cert_file: Path) -> float:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc.timestamp()


class InternalsCollector(Collector):
    """Reads Chroma's data directory in a background thread; scrapes read the cache.

    Without a ``persist_path`` (a Chroma elsewhere) only Chroma and the certificate are probed.
    """

    def __init__(
        self,
        persist_path: Path | None,
        *,
        chroma_url: str | None = None,
        cert_file: Path | None = None,
        interval_s: float = 30.0,
        collection_series: int = DEFAULT_COLLECTION_SERIES,
        sqlite_filename: str = SQLITE_NAME,
        read_budget_s: float = DEFAULT_READ_BUDGET_S,
    ) -> None:
        self.persist_path = Path(persist_path) if persist_path is not None else None
        self.sqlite_filename = sqlite_filename
        self.chroma_url = chroma_url.rstrip("/") if chroma_url else None
        self.cert_file = cert_file
        self.interval_s = interval_s
        self.collection_series = collection_series
        self.snapshot = Snapshot()
        self.errors: dict[str, int] = {}
        self.read_budget_s = read_budget_s
        self._records: RecordCache = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the background loop -----------------------------------------------------------------
    def start(self) -> InternalsCollector:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="chromactl-internals", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # keep serving the last values; never let the thread die
                self._error("internal")
                log.exception("reading Chroma's internals failed")
            self._stop.wait(self.interval_s)

    def _error(self, reason: str) -> None:
        with self._lock:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def refresh(self) -> Snapshot:
        """Read everything once; what cannot be read keeps its previous value."""
        start = time.perf_counter()
        old = self.snapshot
        new = Snapshot(
            collections=old.collections,
            sqlite_bytes=old.sqlite_bytes,
            segment_bytes=old.segment_bytes,
            cert_expiry=old.cert_expiry,
            last_success=old.last_success,
        )
        if self.persist_path is not None:
            self._read_data_directory(self.persist_path, new)
        if self.chroma_url is not None:
            new.chroma_up, new.chroma_ready = self._probe(self.chroma_url)
        if self.cert_file is not None:
            try:
                new.cert_expiry = cert_not_after(self.cert_file)
            except (OSError, ValueError) as exc:
                self._error("certificate")
                log.warning("cannot read certificate %s: %s", self.cert_file, exc)
        new.duration_s = time.perf_counter() - start
        self.snapshot = new
        return new

    def _read_data_directory(self, persist_path: Path, new: Snapshot) -> None:
        db_file = persist_path / self.sqlite_filename
        if db_file.exists():
            try:
                new.collections, self._records, slow = read_sqlite(
                    db_file, self._records, budget_s=self.read_budget_s
                )
                new.sqlite_ok = True
                new.last_success = time.time()
                if slow:
                    self._error("over_budget")
            except ReadBudgetExceeded:
                self._error("over_budget")
                log.debug("skipping SQLite this round: a read went over its budget")
            except sqlite3.OperationalError as exc:
                self._error("busy" if "locked" in str(exc) or "busy" in str(exc) else "sqlite")
                log.debug("skipping SQLite this round: %s", exc)
            except sqlite3.DatabaseError as exc:
                self._error("sqlite")
                log.warning("cannot read %s: %s", db_file, exc)
        try:
            new.sqlite_bytes = float(db_file.stat().st_size) if db_file.exists() else 0.0
            new.segment_bytes = float(sum(dir_bytes(p) for p in persist_path.iterdir() if p.is_dir()))
            st = os.statvfs(persist_path)
            new.volume_free_bytes = float(st.f_bavail * st.f_frsize)
            new.volume_size_bytes = float(st.f_blocks * st.f_frsize)
        except OSError as exc:
            self._error("filesystem")
            log.warning("cannot read %s: %s", persist_path, exc)

    def _probe(self, chroma_url: str) -> tuple[float, float]:
        up = ready = 0.0
        try:
            with httpx.Client(timeout=2.0) as client:
                up = float(client.get(chroma_url + "/api/v2/heartbeat").status_code == 200)
                ready = float(client.get(chroma_url + "/api/v2/healthcheck").status_code == 200)
        except httpx.HTTPError:
            self._error("chroma_unreachable")
        return up, ready

    # -- the scrape -----------------------------------------------------------------------
    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield from self._collection_metrics(snap)
        for name, doc, value in [
            ("chromactl_chroma_sqlite_bytes", "Size of chroma.sqlite3.", snap.sqlite_bytes),
            ("chromactl_chroma_segment_bytes", "Size of every vector segment directory.", snap.segment_bytes),
            ("chromactl_chroma_volume_free_bytes", "Free bytes on the data volume.", snap.volume_free_bytes),
            ("chromactl_chroma_volume_size_bytes", "Size of the data volume.", snap.volume_size_bytes),
            (
                "chromactl_gateway_tls_certificate_expiry_timestamp_seconds",
                "When the gateway's TLS certificate expires (Unix time).",
                snap.cert_expiry,
            ),
            (
                "chromactl_chroma_internals_last_success_timestamp_seconds",
                "When SQLite was last read successfully (Unix time).",
                snap.last_success,
            ),
        ]:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        if self.chroma_url is not None:
            yield GaugeMetricFamily(
                "chromactl_chroma_up", "Chroma answers its heartbeat.", value=snap.chroma_up
            )
            yield GaugeMetricFamily(
                "chromactl_chroma_ready", "Chroma's healthcheck answers 200 (ready).", value=snap.chroma_ready
            )
        yield GaugeMetricFamily(
            "chromactl_chroma_internals_duration_seconds",
            "Time the last read of the data directory took.",
            value=snap.duration_s,
        )
        errors = CounterMetricFamily(
            "chromactl_chroma_internals_errors",
            "Reads of Chroma's internals that failed, by reason (busy: SQLite was locked, skipped).",
            labels=["reason"],
        )
        with self._lock:
            for reason, count in sorted(self.errors.items()):
                errors.add_metric([reason], count)
        yield errors

    def _collection_metrics(self, snap: Snapshot) -> Iterator[Metric]:
        if not snap.last_success:
            return
        labels = ["tenant", "database", "collection"]
        records = GaugeMetricFamily(
            "chromactl_chroma_records",
            "Records per collection (the largest; the rest as __other__).",
            labels=labels,
        )
        depth = GaugeMetricFamily(
            "chromactl_chroma_write_log_records", "Rows in Chroma's write log, per collection.", labels=labels
        )
        tail = GaugeMetricFamily(
            "chromactl_chroma_unpersisted_records",
            "Records in the write log not yet in the vector segment's files, per collection.",
            labels=labels,
        )
        by_key = {(c.tenant, c.database, c.name): c for c in snap.collections}
        keep, rest = top_n({k: c.records for k, c in by_key.items()}, self.collection_series)
        for key in keep:
            c = by_key[key]
            lv = [clip(v) for v in key]
            records.add_metric(lv, c.records)
            depth.add_metric(lv, c.log_depth)
            tail.add_metric(lv, c.unpersisted)
        if rest:
            other = [OTHER, OTHER, OTHER]
            records.add_metric(other, sum(by_key[k].records for k in rest))
            depth.add_metric(other, sum(by_key[k].log_depth for k in rest))
            tail.add_metric(other, sum(by_key[k].unpersisted for k in rest))
        yield records
        yield depth
        yield tail
        per_db: dict[tuple[str, str], int] = {}
        for c in snap.collections:
            per_db[(c.tenant, c.database)] = per_db.get((c.tenant, c.database), 0) + 1
        collections = GaugeMetricFamily(
            "chromactl_chroma_collections",
            "Collections per tenant and database (the largest; the rest as __other__).",
            labels=["tenant", "database"],
        )
        keep_db, rest_db = top_n({k: float(v) for k, v in per_db.items()}, self.collection_series)
        for db_key in keep_db:
            collections.add_metric([clip(db_key[0]), clip(db_key[1])], per_db[db_key])
        if rest_db:
            collections.add_metric([OTHER, OTHER], sum(per_db[k] for k in rest_db))
        yield collections
