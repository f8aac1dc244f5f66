"""The consistent cut: inside the write hold, bring the first-pass copy up to date.

The first pass copied every file without a hold and recorded an xxh3 digest per
1 MiB chunk of what it copied. Inside the hold (no write in flight, new ones
waiting) a read transaction on ``chroma.sqlite3`` takes SQLite's SHARED lock,
so no stray writer can commit while the files are compared. Then, for every file
whose ``stat`` changed since its first-pass copy (or changed too close to it to
trust the timestamp), the live chunks are hashed and only those that differ are
written into a delta file (for the staged SQLite copy: into that copy itself).
The hold then costs a hash of the changed files, not a copy of the data.

Chroma 1.x keeps its SQLite database in rollback-journal mode: while a reader
holds SHARED, the database file is exactly the last committed state.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from chromactl.chromadata import SQLITE_NAME

from .chromadb_files import FileState, segment_files
from .chunks import CHUNK, digest
from .hold import WriteHold

#: A file modified this close to its first-pass stat may change again within
#: the same timestamp tick; its chunks are always compared inside the hold.
RACY_WINDOW_NS = 1_000_000_000
#: SQLite files this large are mapped (pages pre-faulted) before the hold, so
#: hashing them inside it reads memory instead of copying through syscalls.
MAP_MIN = 4 * CHUNK


@dataclass(frozen=True)
class Baseline:
    """A file as the first pass copied it."""

    state: FileState
    stat_at_ns: int
    size: int
    digests: list[bytes]

    def maybe_changed(self, st: os.stat_result) -> bool:
        return FileState.of(st) != self.state or self.stat_at_ns - self.state.mtime_ns < RACY_WINDOW_NS


@dataclass
class Patch:
    """How a file differs from its first-pass copy: its new size and the chunks
    (indexes) rewritten into its delta file."""

    size: int
    changed: set[int] = field(default_factory=set)
    delta: Path | None = None
    written: int = 0


@dataclass
class Cut:
    patches: dict[str, Patch]
    present: set[str]
    hold_s: float
    hold_wait_s: float
    checked_bytes: int
    #: Inside the hold: granted -> SQLite locked -> files compared -> released.
    steps_s: dict[str, float] = field(default_factory=dict)


class SqliteReadLock:
    """A read transaction: SQLite's SHARED lock, so no other connection can commit.

    The caller must not open and close other descriptors of the database file in
    this process while it is held (closing any descriptor drops POSIX locks).
    """

    def __init__(self, path: Path, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> SqliteReadLock:
        conn = sqlite3.connect(self._path, timeout=self._timeout_s, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("ROLLBACK")
            finally:
                self._conn.close()
                self._conn = None


class _Source:
    """Reads a live file by offset: from a pre-faulted mapping where it covers the
    range, else with ``pread``."""

    def __init__(self, fd: int, mapped: mmap.mmap | None) -> None:
        self.fd = fd
        self._map = mapped
        self._view = memoryview(mapped) if mapped is not None else None

    def read(self, offset: int, n: int) -> bytes | memoryview:
        if self._view is not None and offset + n <= len(self._view):
            return self._view[offset : offset + n]
        return os.pread(self.fd, n, offset)

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
        if self._map is not None:
            self._map.close()


def diff_file(
    source: _Source,
    size: int,
    base: Baseline | None,
    delta_fd: int,
    patch: Patch,
    digests_out: list[bytes] | None = None,
) -> None:
    """Compare the live chunks with the baseline; write those that differ into ``delta_fd``
    at their own offsets. ``digests_out`` receives the digest of every chunk now."""
    base_size = base.size if base is not None else 0
    digests = base.digests if base is not None else []
    for i, offset in enumerate(range(0, size, CHUNK)):
        n = min(CHUNK, size - offset)
        data = source.read(offset, n)
        if len(data) != n:
            raise OSError(f"file shrank while it was compared ({len(data)} of {n} bytes)")
        old_len = min(CHUNK, base_size - offset) if offset < base_size else 0
        now = digest(data)
        if digests_out is not None:
            digests_out.append(now)
        if old_len == n and i < len(digests) and now == digests[i]:
            continue
        os.pwrite(delta_fd, data, offset)
        patch.changed.add(i)
        patch.written += n


def catch_up(path: Path, staged: Path, base: Baseline) -> Baseline:
    """Before the hold: bring the staged copy of a busy file (``chroma.sqlite3``) up to
    date without any lock, so the hold finds only the chunks written since. What this
    reads may be torn; the hold compares again under the lock."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not base.maybe_changed(st):  # not written since it was staged
            return base
        stat_at = time.time_ns()
        out = os.open(staged, os.O_WRONLY)
        try:
            digests: list[bytes] = []
            size = st.st_size
            try:
                diff_file(_Source(fd, None), size, base, out, Patch(size), digests)
            except OSError:  # shrank while read: the hold settles it
                return base
            os.ftruncate(out, size)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return Baseline(FileState.of(st), stat_at, size, digests)


def take_cut(
    data_dir: Path,
    staging: Path,
    baselines: dict[str, Baseline],
    hold: WriteHold,
    *,
    staged_sqlite: Path | None,
    lock_timeout_s: float = 30.0,
) -> Cut:
    """Hold writes, lock SQLite, patch the first-pass copy up to the live state, release.

    ``staged_sqlite`` is the first pass's raw copy of ``chroma.sqlite3``, patched in
    place; other files get a delta file under ``staging/delta``.
    """
    sqlite_path = data_dir / SQLITE_NAME
    # Opened (and pre-faulted) before the lock; closed only after it is released.
    sql_fd = os.open(sqlite_path, os.O_RDONLY)
    mapped = None
    try:
        pre = os.fstat(sql_fd)
        if pre.st_size >= MAP_MIN:
            mapped = mmap.mmap(
                sql_fd, pre.st_size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ
            )
        sql_source = _Source(sql_fd, mapped)
        try:
            return _cut(
                data_dir, staging, baselines, hold, sql_source, pre.st_ino, staged_sqlite, lock_timeout_s
            )
        finally:
            sql_source.close()
    finally:
        os.close(sql_fd)


def _cut(
    data_dir: Path,
    staging: Path,
    baselines: dict[str, Baseline],
    hold: WriteHold,
    sql_source: _Source,
    sql_ino: int,
    staged_sqlite: Path | None,
    lock_timeout_s: float,
) -> Cut:
    patches: dict[str, Patch] = {}
    present: set[str] = set()
    checked = [0]
    staged_fd = os.open(staged_sqlite, os.O_WRONLY) if staged_sqlite is not None else None
    delta_dir = staging / "delta"
    start = time.perf_counter()
    marks: dict[str, float] = {}
    try:
        with hold:
            marks["granted"] = time.perf_counter()
            with SqliteReadLock(data_dir / SQLITE_NAME, lock_timeout_s):
                marks["locked"] = time.perf_counter()
                _compare(
                    data_dir,
                    baselines,
                    sql_source,
                    sql_ino,
                    staged_sqlite,
                    staged_fd,
                    delta_dir,
                    patches,
                    present,
                    checked,
                )
                marks["compared"] = time.perf_counter()
        hold_s = time.perf_counter() - start
    finally:
        if staged_fd is not None:
            os.close(staged_fd)
    end = start + hold_s
    steps = {
        "grant_s": marks["granted"] - start,
        "lock_s": marks["locked"] - marks["granted"],
        "compare_s": marks["compared"] - marks["locked"],
        "release_s": end - marks["compared"],
    }
    return Cut(patches, present, hold_s, getattr(hold, "waited_s", 0.0), checked[0], steps)


def _compare(
    data_dir: Path,
    baselines: dict[str, Baseline],
    sql_source: _Source,
    sql_ino: int,
    staged_sqlite: Path | None,
    staged_fd: int | None,
    delta_dir: Path,
    patches: dict[str, Patch],
    present: set[str],
    checked: list[int],
) -> None:
    files = [(SQLITE_NAME, data_dir / SQLITE_NAME), *segment_files(data_dir)]
    for rel, path in files:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        present.add(rel)
        base = baselines.get(rel)
        if base is not None and not base.maybe_changed(st):
            continue
        checked[0] += st.st_size
        patch = Patch(st.st_size)
        if rel == SQLITE_NAME:
            if st.st_ino != sql_ino:
                raise OSError(f"{path} was replaced during the snapshot")
            if staged_fd is not None:
                diff_file(sql_source, st.st_size, base, staged_fd, patch)
                os.ftruncate(staged_fd, st.st_size)
                patch.delta = staged_sqlite
            else:
                _diff_to_delta(sql_source, st.st_size, base, delta_dir, rel, patch)
        else:
            fd = os.open(path, os.O_RDONLY)
            try:
                _diff_to_delta(_Source(fd, None), st.st_size, base, delta_dir, rel, patch)
            finally:
                os.close(fd)
        if patch.changed or base is None or patch.size != base.size:
            patches[rel] = patch


def _diff_to_delta(
    source: _Source, size: int, base: Baseline | None, delta_dir: Path, rel: str, patch: Patch
) -> None:
    delta = delta_dir / rel
    delta.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(delta, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        diff_file(source, size, base, fd, patch)
    finally:
        os.close(fd)
    patch.delta = delta
