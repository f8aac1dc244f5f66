"""Repository locks (docs/backup-format.md, "Locks"): a backup's shared lock keeps prune's chunk
deletion off from before it lists the chunk store until its manifest is written; stale locks
are ignored and removed; and under concurrent backups, prunes and a writer, every complete
snapshot verifies and restores."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from chromactl.backup import NoHold, Repository, create_snapshot, restore
from chromactl.backup.operations.prune import prune
from chromactl.backup.recovery.verify import verify
from chromactl.backup.repository.locks import EXCLUSIVE, SHARED, Lock, LockError, RepositoryLock
from chromactl.config import RetentionSettings

MiB = 1 << 20
#: (A grace of 0 would let prune take a backup that has created its folder but not yet written
#: its lease for a dead one's: the grace is what covers that moment.)
KEEP_TWO = RetentionSettings(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, incomplete_grace_s=600)


def make_dir(root: Path) -> Path:
    data = root / "data"
    for seg, size in (("seg-a", 4 * MiB + 1234), ("seg-b", 2 * MiB)):
        (data / seg).mkdir(parents=True)
        (data / seg / "data_level0.bin").write_bytes(os.urandom(size))
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(1000),) for _ in range(200)])
    db.commit()
    db.close()
    return data


def put_lock(repo: Repository, lock_id: str, kind: str, age_s: float, host: str = "other-host") -> None:
    repo.write_lock(lock_id, Lock(kind, host, 4242, time.time() - age_s, 600.0))


def test_a_fresh_exclusive_lock_stops_a_backup_naming_its_holder(tmp_path: Path) -> None:
    data = make_dir(tmp_path)
    repo = Repository(str(tmp_path / "target"))
    put_lock(repo, "prune-elsewhere", EXCLUSIVE, age_s=5)
    with pytest.raises(LockError, match="exclusive lock prune-elsewhere of other-host pid 4242"):
        create_snapshot(data, repo, NoHold(), chroma_version="1.5.9", lock_wait_s=0.5)
    assert repo.snapshots() == []
    assert list(repo.read_locks()) == ["prune-elsewhere"]  # ours was withdrawn


def test_a_stale_lock_is_ignored_and_removed_by_prune(tmp_path: Path) -> None:
    data = make_dir(tmp_path)
    repo = Repository(str(tmp_path / "target"))
    put_lock(repo, "dead-prune", EXCLUSIVE, age_s=601)  # not refreshed within its ttl
    put_lock(repo, "dead-backup", SHARED, age_s=3600)
    repo.write_lock("garbage", Lock(SHARED, "h", 1, time.time(), 600.0))
    (tmp_path / "target" / "locks" / "garbage.json").write_text("not a lock")
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9", lock_wait_s=0.5)
    assert first.outcome == "success"
    result = prune(repo, KEEP_TWO, lock_wait_s=0.5)
    assert result.chunks_skipped is None
    assert sorted(result.removed_locks) == ["dead-backup", "dead-prune", "garbage"]
    assert repo.read_locks() == {}  # and prune's own lock is gone too


def test_a_fresh_shared_lock_keeps_chunks_and_shared_locks_coexist(tmp_path: Path) -> None:
    data = make_dir(tmp_path)
    repo = Repository(str(tmp_path / "target"))
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    (data / "seg-a" / "data_level0.bin").write_bytes(os.urandom(4 * MiB))
    second = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    put_lock(repo, "backup-elsewhere", SHARED, age_s=1)
    # another backup runs beside a shared lock
    assert create_snapshot(data, repo, NoHold(), chroma_version="1.5.9", lock_wait_s=0.5).outcome == "success"
    held = prune(repo, KEEP_TWO, lock_wait_s=0.5)
    assert held.removed == [first.snapshot_id, second.snapshot_id] and held.removed_chunks == 0
    assert held.chunks_skipped is not None and "shared lock backup-elsewhere of other-host pid 4242" in (
        held.chunks_skipped
    )
    repo.delete_lock("backup-elsewhere")
    freed = prune(repo, KEEP_TWO, lock_wait_s=0.5)
    assert freed.removed_chunks >= 4 and freed.removed_chunk_bytes > 4 * MiB  # seg-a's old chunks


def test_a_lock_is_refreshed_and_a_lapsed_one_is_refused(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    with RepositoryLock(repo, SHARED, ttl_s=0.2) as lock:
        first = repo.read_locks()[lock.lock_id]
        assert first is not None
        deadline = time.monotonic() + 10
        while (now := repo.read_locks()[lock.lock_id]) is not None and now.refreshed_at == first.refreshed_at:
            assert time.monotonic() < deadline, "the lock was never refreshed"
            time.sleep(0.02)
    assert repo.read_locks() == {}
    # a holder that went ttl/2 without a refresh may have been taken for dead
    t = [1000.0]
    lapsed = RepositoryLock(repo, SHARED, ttl_s=10.0, clock=lambda: t[0])
    lapsed.acquire()
    t[0] += 6.0
    lapsed.refresh()  # the lock object is fresh again, but there was a gap
    with pytest.raises(LockError, match="without a refresh"):
        lapsed.check()
    lapsed.release()
    gone = RepositoryLock(repo, SHARED, ttl_s=600.0)
    gone.acquire()
    repo.delete_lock(gone.lock_id)
    with pytest.raises(LockError, match="was removed"):
        gone.check()


class _Writer(threading.Thread):
    """Changes the segment files while backups run: bytes in place, whole chunks, growth."""

    def __init__(self, data: Path, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.data, self.stop = data, stop
        self.writes = 0

    def run(self) -> None:
        rng = random.Random(7)
        files = sorted(self.data.glob("seg-*/data_level0.bin"))
        while not self.stop.is_set():
            path = rng.choice(files)
            size = path.stat().st_size
            with open(path, "r+b") as fh:
                if rng.random() < 0.1:
                    fh.seek(size)
                    fh.write(os.urandom(rng.randrange(1, 300_000)))
                else:
                    fh.seek(rng.randrange(0, size))
                    fh.write(os.urandom(rng.randrange(1, 5000)))
            self.writes += 1
            time.sleep(0.01)


def test_concurrent_backups_and_prunes_never_lose_a_chunk(tmp_path: Path) -> None:
    """Two backup loops, a prune loop and a writer on one target for several seconds; then every
    complete snapshot verifies and restores. Without the backups' shared lock, prune deletes
    chunks a running backup uploaded or found in the store, and this fails."""
    data = make_dir(tmp_path)
    url = str(tmp_path / "target")
    stop = threading.Event()
    errors: list[BaseException] = []
    backups: list[str] = []
    gc_runs: list[int] = []

    def guarded(fn):  # type: ignore[no-untyped-def]
        def loop() -> None:
            try:
                while not stop.is_set():
                    fn()
            except BaseException as exc:  # reported by the test
                errors.append(exc)
                stop.set()

        return loop

    @guarded
    def backup() -> None:
        result = create_snapshot(
            data, Repository(url), NoHold(), chroma_version="1.5.9", staging_dir=tmp_path
        )
        backups.append(str(result.snapshot_id))
        time.sleep(random.uniform(0.1, 0.5))

    @guarded
    def pruning() -> None:
        result = prune(Repository(url), KEEP_TWO, lock_wait_s=1.0)
        if result.chunks_skipped is None and result.removed_chunks:
            gc_runs.append(result.removed_chunks)
        time.sleep(random.uniform(0.0, 0.2))

    writer = _Writer(data, stop)
    threads = [writer, *(threading.Thread(target=t, daemon=True) for t in (backup, backup, pruning))]
    for t in threads:
        t.start()
    start = time.monotonic()
    while not stop.is_set() and time.monotonic() - start < 30:
        if time.monotonic() - start > 8 and len(backups) >= 12 and len(gc_runs) >= 4:
            break
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(backups) >= 6 and len(gc_runs) >= 2, (len(backups), gc_runs)
    assert writer.writes > 50

    repo = Repository(url)
    complete = repo.complete()
    assert complete
    for snap in complete:
        report = verify(repo, snap.snapshot_id)
        assert report.ok, report.bad_files
        out = tmp_path / f"restored-{snap.snapshot_id}"
        restore(repo, out, snapshot=snap.snapshot_id)
        assert snap.manifest is not None
        for entry in snap.manifest.files:
            assert hashlib.sha256((out / entry.path).read_bytes()).hexdigest() == entry.sha256
    # and the store holds exactly the chunks the remaining snapshots need, after a last prune
    final = prune(repo, KEEP_TWO, lock_wait_s=5)
    assert final.chunks_skipped is None
    needed = set().union(*(s.manifest.chunk_hashes() for s in repo.complete() if s.manifest))
    from chromactl.backup.repository.chunkstore import ChunkStore

    assert set(ChunkStore(repo).listing()) == needed
