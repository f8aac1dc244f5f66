"""The consistent cut: inside the write hold, bring the first-pass copy up to date.

The first pass copied every file without a hold and recorded an xxh3 digest per
1 MiB chunk of what it copied. Inside the hold (no write in flight, new ones
waiting) a read transaction on ``chroma.sqlite3`` takes SQLite's SHARED lock,
so no stray writer can commit while the files are compared. Then, for every file
whose ``stat`` changed since its first-pass copy (or changed too close to it to
trust the timestamp), the live chunks are hashed and only those that differ are
written into a delta file (for the staged SQLite copy: into that copy itself).

What keeps the hold short however large the written collection is: Chroma rewrites a
vector segment's files only when it persists the segment, inside a write, and then
records the persisted position (the segment's ``max_seq_id``, its *generation*) in
SQLite. A copy of the segment read after its generation was read, with that generation
unchanged inside the hold and the files' stat unchanged, is exactly what the segment
holds at the cut: nothing needs reading in the hold. So the files that changed are
caught up *before* the hold (:func:`catch_up_files`), and a hold that finds a segment
persisted meanwhile can be given back at once and tried again after catching up once
more (:func:`take_cut` with ``rehold_over``), the way live migration copies memory.

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

from chromactl.backup.repository.chunks import CHUNK, digest
from chromactl.backup.snapshot.files import FileState, segment_files
from chromactl.backup.snapshot.hold import WriteHold
from chromactl.chromadata import GENERATIONS_SQL, LOG_HEADS_SQL, SQLITE_NAME

#: A file modified this close to its first-pass stat may change again within
#: the same timestamp tick; its chunks are always compared inside the hold.
RACY_WINDOW_NS = 1_000_000_000
#: SQLite files this large are mapped (pages pre-faulted) before the hold, so
#: hashing them inside it reads memory instead of copying through syscalls.
MAP_MIN = 4 * CHUNK
#: A hold that finds vector segments persisted since they were caught up, with more than
#: this many bytes to compare, is given back and tried again (except the last attempt).
REHOLD_MIN_BYTES = 64 * CHUNK
#: Holds tried before one compares whatever changed inside it.
HOLD_ATTEMPTS = 5
#: After a hold given back: how long to wait for the segment's next persist.
PERSIST_WAIT_S = 3.0

#: Per vector segment directory: the write-log position its files were last persisted at.
Generations = dict[str, int]


def segment_dir(rel: str) -> str:
    """The directory (vector segment id) a data-directory file belongs to, or ``""``."""
    head, sep, _ = rel.partition("/")
    return head if sep else ""


def generations(conn: sqlite3.Connection) -> Generations:
    """Each vector segment's persisted position, as Chroma 1.x records it (an integer).
    Chroma 0.x keeps the position in the segment's pickle and wrote SQLite's as bytes: its
    segments get none, and their files are compared as any other."""
    try:
        rows = conn.execute(GENERATIONS_SQL).fetchall()
    except sqlite3.Error:
        return {}
    return {str(seg): seq for seg, seq in rows if isinstance(seq, int)}


def read_generations(db: Path, timeout_s: float = 30.0) -> Generations:
    """:func:`generations` from a short read of the live database (never inside the hold:
    closing a second connection would drop the hold's lock)."""
    conn = sqlite3.connect(db, timeout=timeout_s)
    try:
        return generations(conn)
    finally:
        conn.close()


def read_progress(db: Path, timeout_s: float = 30.0) -> dict[str, tuple[int | None, int | None]]:
    """Per vector segment: (generation, newest write-log row of its collection). A segment
    whose pair moves is being written; its files change at its next persist."""
    conn = sqlite3.connect(db, timeout=timeout_s)
    try:
        gens = generations(conn)
        try:
            heads = {str(seg): seq for seg, seq in conn.execute(LOG_HEADS_SQL) if isinstance(seq, int)}
        except sqlite3.Error:
            heads = {}
    finally:
        conn.close()
    return {seg: (gens.get(seg), heads.get(seg)) for seg in gens.keys() | heads.keys()}


class Shrank(OSError):
    """A file got shorter while it was read: the read copy is torn."""


@dataclass(frozen=True)
class Baseline:
    """A file as it was last copied (first pass or a catch-up)."""

    state: FileState
    stat_at_ns: int
    size: int
    digests: list[bytes]
    #: The segment's generation read before the copy was read; None where unknown.
    generation: int | None = None

    def maybe_changed(self, st: os.stat_result) -> bool:
        return FileState.of(st) != self.state or self.stat_at_ns - self.state.mtime_ns < RACY_WINDOW_NS

    def settled(self, st: os.stat_result, generation: int | None) -> bool:
        """The copy is the file now: its segment has not persisted since the copy was read
        (a persist ends by recording a new generation) and its stat is the same."""
        same_generation = self.generation is not None and generation == self.generation
        return same_generation and FileState.of(st) == self.state

    def unchanged(self, st: os.stat_result, generation: int | None) -> bool:
        return self.settled(st, generation) or not self.maybe_changed(st)

    def partly_updated(self, digests: list[bytes]) -> Baseline:
        """After a catch-up that stopped early (the file shrank while read): the chunks it
        wrote have the digests of what it wrote, the others keep theirs; the stat stays the
        old one, so the hold compares the file again."""
        return Baseline(
            self.state, self.stat_at_ns, self.size, digests + self.digests[len(digests) :], self.generation
        )


@dataclass
class Patch:
    """How a file differs from its first-pass copy: its new size and the chunks
    (indexes) rewritten into its delta file."""

    size: int
    changed: set[int] = field(default_factory=set)
    delta: Path | None = None
    written: int = 0

    def resize(self, size: int) -> None:
        self.size = size
        chunks = -(-size // CHUNK)
        self.changed = {i for i in self.changed if i < chunks}


@dataclass
class Cut:
    patches: dict[str, Patch]
    present: set[str]
    hold_s: float
    hold_wait_s: float
    checked_bytes: int
    #: Inside the hold: granted -> SQLite locked -> files compared -> released.
    steps_s: dict[str, float] = field(default_factory=dict)
    #: Given back without a cut: these segments persisted since they were caught up.
    moved: set[str] = field(default_factory=set)
    #: Bytes written into deltas inside the hold.
    rewritten_bytes: int = 0
    #: Unix time inside the hold: every write acknowledged before it is in the cut, every
    #: later one is not (continuous backup replays the journal from here).
    cut_at: float = 0.0

    @property
    def given_back(self) -> bool:
        return bool(self.moved)


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

    def generations(self) -> Generations:
        """:func:`generations` read inside the transaction."""
        assert self._conn is not None
        return generations(self._conn)

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
            raise Shrank(f"file shrank while it was compared ({len(data)} of {n} bytes)")
        old_len = min(CHUNK, base_size - offset) if offset < base_size else 0
        now = digest(data)
        if not (old_len == n and i < len(digests) and now == digests[i]):
            os.pwrite(delta_fd, data, offset)
            patch.changed.add(i)
            patch.written += n
        if digests_out is not None:  # only once the chunk is where the digest says it is
            digests_out.append(now)


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
            except Shrank:  # the hold settles it
                return base.partly_updated(digests)
            os.ftruncate(out, size)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return Baseline(FileState.of(st), stat_at, size, digests)


def catch_up_files(
    data_dir: Path, staging: Path, baselines: dict[str, Baseline], patches: dict[str, Patch]
) -> int:
    """Before the hold: copy what changed in the segment files since they were last
    copied into their deltas (``patches``, kept across catch-ups), so the hold finds the
    files settled. Returns the bytes read. What this reads may be torn; only a copy whose
    generation still holds in the hold is trusted without reading again."""
    gens = read_generations(data_dir / SQLITE_NAME)
    read = 0
    for rel, path in segment_files(data_dir):
        base = baselines.get(rel)
        generation = gens.get(segment_dir(rel))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            st = os.fstat(fd)
            if base is not None and base.unchanged(st, generation):
                continue
            stat_at = time.time_ns()
            patch = patches.setdefault(rel, Patch(st.st_size))
            digests: list[bytes] = []
            try:
                _diff_to_delta(_Source(fd, None), st.st_size, base, staging / "delta", rel, patch, digests)
            except Shrank:  # the hold settles it
                if base is not None:
                    baselines[rel] = base.partly_updated(digests)
                continue
            read += st.st_size
            baselines[rel] = Baseline(FileState.of(st), stat_at, st.st_size, digests, generation)
        finally:
            os.close(fd)
    return read


def take_cut(
    data_dir: Path,
    staging: Path,
    baselines: dict[str, Baseline],
    hold: WriteHold,
    *,
    staged_sqlite: Path | None,
    patches: dict[str, Patch] | None = None,
    rehold_over: int | None = None,
    lock_timeout_s: float = 30.0,
) -> Cut:
    """Hold writes, lock SQLite, patch the copy up to the live state, release.

    ``staged_sqlite`` is the first pass's raw copy of ``chroma.sqlite3``, patched in
    place; other files get a delta file under ``staging/delta`` (``patches``: those of
    earlier catch-ups, updated in place). With ``rehold_over``, a hold that finds vector
    segments persisted since their copy with more than that many bytes to compare is
    released at once, nothing compared: the cut's ``moved`` names them.
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
                data_dir,
                staging,
                baselines,
                hold,
                sql_source,
                pre.st_ino,
                staged_sqlite,
                {} if patches is None else patches,
                rehold_over,
                lock_timeout_s,
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
    patches: dict[str, Patch],
    rehold_over: int | None,
    lock_timeout_s: float,
) -> Cut:
    present: set[str] = set()
    checked = [0]
    moved: set[str] = set()
    written_before = sum(p.written for p in patches.values())
    staged_fd = os.open(staged_sqlite, os.O_WRONLY) if staged_sqlite is not None else None
    delta_dir = staging / "delta"
    start = time.perf_counter()
    marks: dict[str, float] = {}
    try:
        with hold:
            marks["granted"] = time.perf_counter()
            cut_at = time.time()
            with SqliteReadLock(data_dir / SQLITE_NAME, lock_timeout_s) as lock:
                marks["locked"] = time.perf_counter()
                gens = lock.generations()
                files = _to_compare(data_dir, baselines, gens, present)
                if rehold_over is not None:
                    moved = _moved(files, baselines, gens, rehold_over)
                if not moved:
                    _compare(
                        files,
                        baselines,
                        sql_source,
                        sql_ino,
                        staged_sqlite,
                        staged_fd,
                        delta_dir,
                        patches,
                        checked,
                    )
                marks["compared"] = time.perf_counter()
        end = time.perf_counter()
    finally:
        if staged_fd is not None:
            os.close(staged_fd)
    # Writes were held from the gate's close: the drain (``waited_s``), then until released.
    # Before the close, the hold waited for a quiet moment while writes went on.
    waited = getattr(hold, "waited_s", 0.0)
    hold_s = waited + end - marks["granted"]
    steps = {
        "quiet_s": max(0.0, marks["granted"] - start - waited),
        "grant_s": waited,
        "lock_s": marks["locked"] - marks["granted"],
        "compare_s": marks["compared"] - marks["locked"],
        "release_s": end - marks["compared"],
    }
    rewritten = sum(p.written for p in patches.values()) - written_before
    return Cut(patches, present, hold_s, waited, checked[0], steps, moved, rewritten, cut_at)


#: A file to compare inside the hold: its name, path and stat there.
_Changed = tuple[str, Path, os.stat_result]


def _to_compare(
    data_dir: Path, baselines: dict[str, Baseline], gens: Generations, present: set[str]
) -> list[_Changed]:
    """Every file that exists (into ``present``); those that may differ from their copy
    are returned."""
    out: list[_Changed] = []
    for rel, path in [(SQLITE_NAME, data_dir / SQLITE_NAME), *segment_files(data_dir)]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        present.add(rel)
        base = baselines.get(rel)
        if base is None or not base.unchanged(st, gens.get(segment_dir(rel))):
            out.append((rel, path, st))
    return out


def _moved(files: list[_Changed], baselines: dict[str, Baseline], gens: Generations, over: int) -> set[str]:
    """The segments persisted since their copy, if comparing them would read more than ``over``."""
    moved: dict[str, int] = {}
    for rel, _, st in files:
        base = baselines.get(rel)
        seg = segment_dir(rel)
        if base is not None and base.generation is not None and gens.get(seg) != base.generation:
            moved[seg] = moved.get(seg, 0) + st.st_size
    return set(moved) if sum(moved.values()) > over else set()


def _compare(
    files: list[_Changed],
    baselines: dict[str, Baseline],
    sql_source: _Source,
    sql_ino: int,
    staged_sqlite: Path | None,
    staged_fd: int | None,
    delta_dir: Path,
    patches: dict[str, Patch],
    checked: list[int],
) -> None:
    for rel, path, st in files:
        base = baselines.get(rel)
        checked[0] += st.st_size
        if rel == SQLITE_NAME:
            patch = Patch(st.st_size)
            if st.st_ino != sql_ino:
                raise OSError(f"{path} was replaced during the snapshot")
            if staged_fd is not None:
                diff_file(sql_source, st.st_size, base, staged_fd, patch)
                os.ftruncate(staged_fd, st.st_size)
                patch.delta = staged_sqlite
            else:
                _diff_to_delta(sql_source, st.st_size, base, delta_dir, rel, patch)
        else:
            patch = patches.get(rel) or Patch(st.st_size)
            fd = os.open(path, os.O_RDONLY)
            try:
                _diff_to_delta(_Source(fd, None), st.st_size, base, delta_dir, rel, patch)
            finally:
                os.close(fd)
        if patch.changed or base is None or patch.size != base.size or rel in patches:
            patches[rel] = patch


def _diff_to_delta(
    source: _Source,
    size: int,
    base: Baseline | None,
    delta_dir: Path,
    rel: str,
    patch: Patch,
    digests_out: list[bytes] | None = None,
) -> None:
    """Chunks that differ from ``base`` into the file's delta, over what earlier catch-ups
    put there; ``patch`` keeps every chunk that differs from the first-pass copy."""
    delta = delta_dir / rel
    delta.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(delta, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        patch.resize(size)
        diff_file(source, size, base, fd, patch, digests_out)
    finally:
        os.close(fd)
    patch.delta = delta
