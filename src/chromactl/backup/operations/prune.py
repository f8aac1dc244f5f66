"""Retention: keep the last N plus daily/weekly/monthly windows; drop incomplete leftovers.

The journal of continuous backup goes with its bases: an epoch that ends before the cut of
the oldest kept snapshot can no longer be replayed onto any of them and is removed with them;
no other epoch is.

A snapshot without a manifest is left alone while the backup writing it holds a fresh lease
(:mod:`.lease`), however long it runs; without a fresh lease (its writer died, or wrote none)
it is removed once older than ``incomplete_grace_s``.

In a content-addressed repository (format 3), the snapshots go first (manifest first); then,
under the exclusive lock (:mod:`.locks`: no backup or copy into the repository runs), stale
locks are removed and every chunk that no remaining complete manifest names is deleted. The
kept bases of continuous backup are such manifests; journal segments are not chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.repository.locks import EXCLUSIVE, LOCK_TTL_S, LockError, RepositoryLock, stale_locks
from chromactl.backup.repository.repository import Repository, SnapshotInfo
from chromactl.config import RetentionSettings

log = logging.getLogger("chromactl.backup")
#: How long prune waits for running backups before it leaves the chunks to the next prune.
PRUNE_LOCK_WAIT_S = 30.0
#: Chunks deleted per request (S3 deletes up to 1000 objects in one).
DELETE_BATCH = 1000


@dataclass
class PruneResult:
    kept: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    removed_incomplete: list[str] = field(default_factory=list)
    #: Journal epochs removed with the last snapshots they could be replayed onto.
    removed_epochs: list[str] = field(default_factory=list)
    #: Chunks no remaining snapshot names, and their bytes (format 3).
    removed_chunks: int = 0
    removed_chunk_bytes: int = 0
    #: Locks of processes that died (not refreshed within their ttl).
    removed_locks: list[str] = field(default_factory=list)
    #: Why no chunk was deleted this time (a backup held the repository), if so.
    chunks_skipped: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _windows(policy: RetentionSettings) -> list[tuple[str, int, Callable[[datetime], object]]]:
    return [
        ("daily", policy.keep_daily, lambda t: t.date()),
        ("weekly", policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        ("monthly", policy.keep_monthly, lambda t: (t.year, t.month)),
    ]


def select_kept(complete: list[SnapshotInfo], policy: RetentionSettings) -> dict[str, list[str]]:
    """Snapshot id → reasons to keep it. The newest complete snapshot is always kept."""
    newest_first = sorted(complete, key=lambda s: s.snapshot_id, reverse=True)
    kept: dict[str, list[str]] = {}
    if newest_first:
        kept.setdefault(newest_first[0].snapshot_id, []).append("newest")
    for snap in newest_first[: policy.keep_last]:
        kept.setdefault(snap.snapshot_id, []).append("last")
    for name, count, bucket in _windows(policy):
        seen: set[object] = set()
        for snap in newest_first:
            if len(seen) >= count:
                break
            key = bucket(snap.created)
            if key not in seen:
                seen.add(key)
                kept.setdefault(snap.snapshot_id, []).append(name)
    return kept


def abandoned(repo: Repository, snap: SnapshotInfo, grace_s: float, now: float) -> bool:
    """Whether an incomplete snapshot is a leftover: no backup holds a fresh lease on it and
    it is older than ``grace_s``."""
    if now - snap.created.timestamp() < grace_s:
        return False
    lease = repo.read_lease(snap.snapshot_id)
    return lease is None or not lease.fresh(now)


def collect_chunks(
    repo: Repository,
    result: PruneResult,
    *,
    dry_run: bool = False,
    lock_ttl_s: float = LOCK_TTL_S,
    lock_wait_s: float = PRUNE_LOCK_WAIT_S,
    now: float | None = None,
) -> None:
    """Delete the chunks that no complete manifest names, and stale locks, under the
    exclusive lock (a dry run takes no lock and deletes nothing). When backups hold the
    repository for longer than ``lock_wait_s``, nothing is deleted: ``result.chunks_skipped``
    says who holds it, and the next prune deletes them. Locks are judged as at ``now``
    (default: the clock)."""
    if repo.config() is None:
        return  # formats 1 and 2 only: no chunk store
    store = ChunkStore(repo)
    offset = 0.0 if now is None else now - time.time()

    def clock() -> float:
        return time.time() + offset

    if dry_run:
        _collect(repo, store, result, None, clock())
        return
    try:
        with RepositoryLock(repo, EXCLUSIVE, ttl_s=lock_ttl_s, wait_s=lock_wait_s, clock=clock) as lock:
            _collect(repo, store, result, lock, clock())
    except LockError as exc:
        result.chunks_skipped = str(exc)
        log.warning("prune deleted no chunk: %s", exc)


def _collect(
    repo: Repository, store: ChunkStore, result: PruneResult, lock: RepositoryLock | None, now: float
) -> None:
    # read only now, under the lock: every manifest written before it, none being written
    locks = repo.read_locks()
    result.removed_locks = [i for i in stale_locks(locks, now) if lock is None or i != lock.lock_id]
    gone = set(result.removed)  # already deleted, or (a dry run) would be
    referenced = {
        store.key(c)
        for s in repo.complete()
        if s.manifest and s.snapshot_id not in gone
        for c in s.manifest.chunk_hashes()
    }
    unused = {key: size for key, size in store.listing().items() if key not in referenced}
    result.removed_chunks = len(unused)
    result.removed_chunk_bytes = sum(unused.values())
    if lock is None:
        return
    for lock_id in result.removed_locks:
        repo.delete_lock(lock_id)
    lock.check()
    keys = sorted(unused)
    for start in range(0, len(keys), DELETE_BATCH):
        lock.check(remote=False)  # a lock that lapsed no longer keeps backups out
        store.delete_keys(keys[start : start + DELETE_BATCH])


def prune(
    repo: Repository,
    policy: RetentionSettings,
    *,
    dry_run: bool = False,
    now: float | None = None,
    lock_ttl_s: float = LOCK_TTL_S,
    lock_wait_s: float = PRUNE_LOCK_WAIT_S,
) -> PruneResult:
    """Apply ``policy``, then delete the chunks no snapshot needs any more (see
    :func:`collect_chunks`); ``now`` (Unix seconds, default the clock) is the time leases and
    ages are judged at."""
    now = time.time() if now is None else now
    snaps = repo.snapshots()
    complete = [s for s in snaps if s.complete]
    kept = select_kept(complete, policy)
    result = PruneResult(kept=kept, dry_run=dry_run)
    for snap in complete:
        if snap.snapshot_id not in kept:
            result.removed.append(snap.snapshot_id)
    for snap in snaps:
        if not snap.complete and abandoned(repo, snap, policy.incomplete_grace_s, now):
            result.removed_incomplete.append(snap.snapshot_id)
    timeline = Timeline(repo)
    cuts = [s.manifest.cut_at for s in complete if s.snapshot_id in kept and s.manifest and s.manifest.cut_at]
    if cuts:
        result.removed_epochs = [h.epoch for h in timeline.epochs() if h.end < min(cuts)]
    if not dry_run:
        for sid in result.removed + result.removed_incomplete:
            repo.delete(sid)
        for epoch in result.removed_epochs:
            timeline.delete_epoch(epoch)
    collect_chunks(repo, result, dry_run=dry_run, lock_ttl_s=lock_ttl_s, lock_wait_s=lock_wait_s, now=now)
    return result
