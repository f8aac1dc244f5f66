"""Taking a snapshot: copy, hold writes for a short consistent cut, upload, manifest last.

1. First pass, no hold: every segment file is cut into 1 MiB chunks, each chunk
   hashed (xxh3 for the cut, SHA-256 for its name) and, if the repository's chunk store
   lacks it, compressed into its own zstd frame and uploaded (:mod:`.chunkstore`).
   ``chroma.sqlite3`` is copied raw to a local staging file (chunk
   digests recorded) because it changes under every write and is checked after.
2. Catch up, then the consistent cut (:mod:`.cut`): what changed since the first
   pass is copied into deltas without a hold; then hold writes, take SQLite's SHARED
   lock, and compare only what may have changed since the catch-up. A vector segment
   that Chroma did not persist since it was caught up needs no reading in the hold; a
   hold that finds a large one persisted is given back, and the catch-up and hold are
   tried again right after its next persist.
3. Release. ``PRAGMA quick_check`` on the staged SQLite copy (a failed check
   fails the snapshot) while its chunks are stored; rebuild the chunk lists of the few
   segment files that changed from their first-pass chunks and their delta chunks.
4. ``manifest.json`` last. Until it exists the snapshot is incomplete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chromactl import __version__
from chromactl.backup.progress import NullProgress, Progress
from chromactl.backup.repository.chunks import CHUNK, Copied, FrameCompressor, copy_raw, read_chunks
from chromactl.backup.repository.chunkstore import ChunkStore, ChunkUploader, Earlier
from chromactl.backup.repository.lease import LEASE_TTL_S, LeaseKeeper
from chromactl.backup.repository.locks import LOCK_TTL_S, LOCK_WAIT_S, SHARED, RepositoryLock
from chromactl.backup.repository.manifest import CollectionCount, FileEntry, Manifest
from chromactl.backup.repository.repository import Repository, new_snapshot_id
from chromactl.backup.snapshot import cut as cut_policy
from chromactl.backup.snapshot.cut import (
    Baseline,
    Cut,
    Patch,
    catch_up,
    catch_up_files,
    read_generations,
    read_progress,
    segment_dir,
    take_cut,
)
from chromactl.backup.snapshot.files import (
    FileState,
    check_sqlite,
    collection_counts,
    segment_files,
)
from chromactl.backup.snapshot.hold import NoHold, WriteHold
from chromactl.chromadata import SQLITE_NAME
from chromactl.errors import ChromactlError
from chromactl.storage import redact_url

log = logging.getLogger("chromactl.backup")
#: Threads that compress and upload chunks (at least; one per core if more).
UPLOAD_THREADS = 8


class SnapshotError(ChromactlError):
    """A snapshot could not be taken; nothing restorable was left behind."""


@dataclass
class BackupResult:
    """Outcome of one backup, shaped for logs, ``--json`` and Prometheus."""

    outcome: str
    snapshot_id: str | None = None
    target: str = ""
    duration_s: float = 0.0
    bytes: int = 0
    stored_bytes: int = 0
    files: int = 0
    records: int = 0
    hold_s: float = 0.0
    hold_wait_s: float = 0.0
    recopied_files: int = 0
    recopied_bytes: int = 0
    #: Holds given back before the cut (each a short wait for writes, see :mod:`.cut`).
    holds_given_back: int = 0
    #: Unix time of the cut (see :class:`~.manifest.Manifest`).
    cut_at: float | None = None
    #: Bytes and chunks uploaded to the chunk store: only chunks it lacked.
    uploaded_bytes: int = 0
    uploaded_chunks: int = 0
    #: Chunks of the snapshot already in the store (or stored once for several files).
    reused_chunks: int = 0
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entry(rel: str, copied: Copied, mode: int) -> FileEntry:
    return FileEntry(
        rel,
        copied.size,
        copied.sha256,
        copied.stored_size,
        mode=mode,
        chunks=copied.hashes,
        chunk_sizes=copied.chunk_sizes,
        chunk_xxh3=[d.hex() for d in copied.digests],
    )


def earlier_chunks(manifest: Manifest | None) -> dict[str, Earlier]:
    """Each file's chunks in ``manifest`` (the previous snapshot), for :class:`ChunkUploader`."""
    if manifest is None:
        return {}
    return {
        f.path: list(zip(f.chunk_xxh3, f.chunks, strict=True))
        for f in manifest.files
        if f.chunks is not None and f.chunk_xxh3
    }


@dataclass
class _Engine:
    """One snapshot's shared machinery: repository, staging, chunk uploader, progress."""

    repo: Repository
    snapshot_id: str
    staging: Path
    uploader: ChunkUploader
    progress: Progress
    #: Set when one file failed for good: the others stop at their next chunk.
    aborted: threading.Event = field(default_factory=threading.Event)
    #: The files' chunks in the previous snapshot (unchanged ones are not hashed again).
    earlier: dict[str, Earlier] = field(default_factory=dict)

    def compress_to_repo(self, rel: str, chunks: Callable[[], Iterator[bytes]]) -> Copied:
        """Store the chunks of ``chunks()`` the repository lacks; the file's chunk list."""

        def checked() -> Iterator[bytes]:
            for chunk in chunks():
                if self.aborted.is_set():
                    raise _Aborted(ABORTED)
                yield chunk

        if self.aborted.is_set():
            raise _Aborted(ABORTED)
        try:
            return self.uploader.write(checked(), self.progress.advance, self.earlier.get(rel))
        except _Aborted:
            raise
        except BaseException:
            self.aborted.set()
            raise

    def first_pass_file(
        self, rel: str, path: Path, generation: int | None = None
    ) -> tuple[Baseline, FileEntry] | None:
        try:
            st = path.stat()
            stat_at = time.time_ns()

            def chunks() -> Iterator[bytes]:
                with open(path, "rb", buffering=0) as src:
                    yield from read_chunks(src)

            copied = self.compress_to_repo(rel, chunks)
        except FileNotFoundError:
            return None  # deleted meanwhile: settled inside the hold
        base = Baseline(FileState.of(st), stat_at, copied.size, copied.digests, generation)
        return base, _entry(rel, copied, st.st_mode & 0o777)

    def stage_sqlite(self, path: Path, dest: Path) -> Baseline:
        st = path.stat()
        stat_at = time.time_ns()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with open(path, "rb", buffering=0) as src:
                copied = copy_raw(src, fd, self.progress.advance)
        finally:
            os.close(fd)
        return Baseline(FileState.of(st), stat_at, copied.size, copied.digests)

    def rebuild(self, patch: Patch, old: FileEntry | None, live: Path) -> Copied:
        """A changed segment file: its first-pass chunks with the delta chunks laid over
        them; only changed chunks the store lacks are uploaded. An unchanged chunk (the file's
        SHA-256 needs its content) is read from ``live``, the file in the data directory, when
        it still hashes to its first-pass name, else downloaded from the chunk store."""
        assert patch.delta is not None
        before = (old.chunks or []) if old is not None else []

        def unchanged(i: int, n: int, src: int | None) -> bytes:
            if i >= len(before):
                return b""
            if src is not None:
                chunk = os.pread(src, n, i * CHUNK)
                if hashlib.sha256(chunk).hexdigest() == before[i]:
                    return chunk
            return self.uploader.store.read(before[i])[:n]

        def chunks() -> Iterator[bytes]:
            assert patch.delta is not None
            with contextlib.ExitStack() as files:
                delta = files.enter_context(open(patch.delta, "rb", buffering=0))
                try:
                    src: int | None = files.enter_context(open(live, "rb", buffering=0)).fileno()
                except FileNotFoundError:
                    src = None
                for i, offset in enumerate(range(0, patch.size, CHUNK)):
                    n = min(CHUNK, patch.size - offset)
                    if i in patch.changed:
                        chunk = os.pread(delta.fileno(), n, offset)
                    else:
                        chunk = unchanged(i, n, src)
                    if len(chunk) != n:
                        raise SnapshotError(f"cannot rebuild chunk {i}: the first-pass copy is short")
                    yield chunk

        return self.uploader.write(chunks())


ABORTED = "stopped: another file of the snapshot failed"


class _Aborted(ChromactlError):
    """Another file of the snapshot failed; this one stopped."""


def consistency_of(hold: WriteHold) -> str:
    """The manifest's ``consistency``: ``offline`` for a stopped directory (:class:`NoHold`),
    ``online`` for a cut under a write hold. The one place the two are told apart."""
    return "offline" if isinstance(hold, NoHold) else "online"


class _SnapshotRun:
    """One snapshot, phase by phase: :meth:`first_pass`, :meth:`cut`, :meth:`upload_database`,
    :meth:`catch_up`, :meth:`drop_deleted`, :meth:`write_manifest`; :meth:`failed` cleans up."""

    def __init__(
        self, data_dir: Path, repo: Repository, hold: WriteHold, engine: _Engine, workers: int
    ) -> None:
        self.data_dir = data_dir
        self.repo = repo
        self.hold = hold
        self.engine = engine
        self.workers = workers
        self.snapshot_id = engine.snapshot_id
        self.consistency = consistency_of(hold)
        self.sqlite_path = data_dir / SQLITE_NAME
        #: Online, chroma.sqlite3 is staged locally and uploaded after the cut; offline it is
        #: an ordinary file of the first pass.
        self.staged_sqlite = engine.staging / SQLITE_NAME if self.consistency == "online" else None
        self.baselines: dict[str, Baseline] = {}
        #: Segment files' deltas, kept from one catch-up to the next and into the cut.
        self.patches: dict[str, Patch] = {}
        #: Vector segments' generations and log heads when the first pass began.
        self.first_progress: dict[str, tuple[int | None, int | None]] = {}
        self.entries: dict[str, FileEntry] = {}
        self.phases: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def first_pass(self) -> None:
        """Copy every file outside the hold: segment files straight to the repository (in
        ``workers`` threads), ``chroma.sqlite3`` to staging (online) then caught up with the
        writes made meanwhile. Records each file's baseline for the cut; the first failure
        stops the other files and is the one raised."""
        engine = self.engine
        files = list(segment_files(self.data_dir))
        total = sum(_size(p) for _, p in files) + _size(self.sqlite_path)
        engine.progress.phase("copy (first pass)", total)
        # Before any segment file is read: the generations the copies will be taken at.
        self.first_progress = read_progress(self.sqlite_path)
        gens = {seg: gen for seg, (gen, _) in self.first_progress.items() if gen is not None}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="copy") as pool:
            futures = {
                rel: pool.submit(engine.first_pass_file, rel, path, gens.get(segment_dir(rel)))
                for rel, path in files
            }
            failures: list[BaseException] = []
            try:
                self._first_pass_database()
            except _Aborted as exc:  # another file failed first: report that one
                failures.append(exc)
            except BaseException:
                engine.aborted.set()
                raise
            for rel, fut in futures.items():
                try:
                    got = fut.result()
                except _Aborted:
                    continue
                except BaseException as exc:
                    engine.aborted.set()
                    failures.insert(0, exc)
                    continue
                if got is not None:
                    self.baselines[rel], self.entries[rel] = got
            if failures:
                raise failures[0]
        self.phases["first_pass_s"] = time.perf_counter() - self.t0

    def _first_pass_database(self) -> None:
        """``chroma.sqlite3``: staged locally (online) or copied like any file (offline)."""
        if self.staged_sqlite is not None:
            self.baselines[SQLITE_NAME] = self.engine.stage_sqlite(self.sqlite_path, self.staged_sqlite)
            return
        done = self.engine.first_pass_file(SQLITE_NAME, self.sqlite_path)
        if done is None:
            raise SnapshotError(f"{self.sqlite_path} disappeared during the snapshot")
        self.baselines[SQLITE_NAME], self.entries[SQLITE_NAME] = done

    def catch_up_before_hold(self) -> None:
        """Copy what changed since the last copy, without a hold: segment files into
        their deltas, the staged ``chroma.sqlite3`` in place."""
        t = time.perf_counter()
        read = catch_up_files(self.data_dir, self.engine.staging, self.baselines, self.patches)
        if self.staged_sqlite is not None:
            self.baselines[SQLITE_NAME] = catch_up(
                self.sqlite_path, self.staged_sqlite, self.baselines[SQLITE_NAME]
            )
        self.phases["catch_up_s"] = self.phases.get("catch_up_s", 0.0) + time.perf_counter() - t
        self.phases["catch_up_bytes"] = self.phases.get("catch_up_bytes", 0.0) + read

    def cut(self) -> Cut:
        """The consistent cut under the write hold (:func:`.cut.take_cut`): which files
        changed since the first pass (their delta chunks staged) and which still exist.

        Up to :data:`~.cut.HOLD_ATTEMPTS` holds: one that finds large vector segments
        persisted since their catch-up is given back at once. Segments being written
        (written or persisted since the first pass began, or found so by a hold) are
        caught up right after their next persist, so that the catch-up and the hold fall
        between two persists. The last attempt compares whatever changed inside the hold."""
        attempts = 1 if self.consistency == "offline" else cut_policy.HOLD_ATTEMPTS
        given_back = 0.0
        now = read_progress(self.sqlite_path)
        sizes: dict[str, int] = {}
        for rel, base in self.baselines.items():
            sizes[segment_dir(rel)] = sizes.get(segment_dir(rel), 0) + base.size
        busy = {
            seg
            for seg, pair in now.items()
            if self.first_progress.get(seg) != pair and sizes.get(seg, 0) > cut_policy.REHOLD_MIN_BYTES
        }
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            if busy and self.consistency == "online":
                self.await_persist(busy)
            self.catch_up_before_hold()
            cut = take_cut(
                self.data_dir,
                self.engine.staging,
                self.baselines,
                self.hold,
                staged_sqlite=self.staged_sqlite,
                patches=self.patches,
                rehold_over=None if last else cut_policy.REHOLD_MIN_BYTES,
            )
            if not cut.given_back:
                break
            given_back += cut.hold_s
            log.info(
                "hold %d given back after %.1f ms: %s persisted since the catch-up",
                attempt,
                cut.hold_s * 1000,
                ", ".join(sorted(cut.moved)),
            )
            busy |= cut.moved
        self.phases["hold_s"] = cut.hold_s
        self.phases["hold_attempts"] = float(attempt)
        self.phases["hold_given_back_s"] = given_back
        self.phases["hold_checked_bytes"] = float(cut.checked_bytes)
        self.phases["hold_rewritten_bytes"] = float(cut.rewritten_bytes)
        self.phases.update({f"hold_{k}": v for k, v in cut.steps_s.items()})
        return cut

    def await_persist(self, segments: set[str]) -> None:
        """Until one of ``segments`` persists again (or :data:`~.cut.PERSIST_WAIT_S`):
        a catch-up started right after a persist has the time to the next one."""
        before = read_generations(self.sqlite_path)
        deadline = time.monotonic() + cut_policy.PERSIST_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.01)
            now = read_generations(self.sqlite_path)
            if any(now.get(seg) != before.get(seg) for seg in segments):
                return

    def upload_database(self) -> list[CollectionCount]:
        """Online: compress the staged ``chroma.sqlite3`` to the repository while ``PRAGMA
        quick_check`` runs on it (a copy that fails it fails the snapshot). Returns the
        collections' record counts, from the copy (online) or the stopped file (offline)."""
        if self.staged_sqlite is None:
            return collection_counts(self.sqlite_path)
        staged = self.staged_sqlite
        t = time.perf_counter()
        mode = self.sqlite_path.stat().st_mode & 0o777
        self.engine.progress.phase("upload (database)", staged.stat().st_size)

        def sqlite_chunks() -> Iterator[bytes]:
            with open(staged, "rb", buffering=0) as src:
                yield from read_chunks(src)

        # PRAGMA quick_check runs in SQLite's C code beside the compression
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quick_check") as checker:
            verdict_f = checker.submit(check_sqlite, staged)
            sqlite_copy = self.engine.compress_to_repo(SQLITE_NAME, sqlite_chunks)
            verdict = verdict_f.result()
        self.phases["quick_check_s"] = time.perf_counter() - t
        if verdict != "ok":
            raise SnapshotError(
                f"the copy of {SQLITE_NAME} failed PRAGMA quick_check ({verdict}); no snapshot was written"
            )
        self.entries[SQLITE_NAME] = _entry(SQLITE_NAME, sqlite_copy, mode)
        return collection_counts(staged)

    def catch_up(self, cut: Cut) -> None:
        """Files the cut found changed: their chunk lists rebuilt from the first pass and the
        delta chunks (only chunks the store lacks are uploaded)."""
        for rel, patch in cut.patches.items():
            if rel == SQLITE_NAME and self.staged_sqlite is not None:
                continue  # uploaded from the staged copy by upload_database
            if rel not in cut.present:
                continue  # caught up, then deleted before the cut
            old = self.entries.get(rel)
            if old is not None and not patch.changed and patch.size == old.size:
                continue  # only its stat changed: the uploaded chunks are its content
            copied = self.engine.rebuild(patch, old, self.data_dir / rel)
            mode = old.mode if old is not None else _mode(self.data_dir / rel)
            self.entries[rel] = _entry(rel, copied, mode)

    def drop_deleted(self, cut: Cut) -> None:
        """Files copied in the first pass but deleted before the cut leave the manifest (their
        chunks, if no snapshot names them, go at the next prune)."""
        for rel in set(self.entries) - cut.present:
            del self.entries[rel]

    def write_manifest(
        self, cut: Cut, counts: list[CollectionCount], *, created_at: str, chroma_version: str
    ) -> Manifest:
        """``manifest.json``, last: from now on the snapshot is complete."""
        manifest = Manifest(
            snapshot_id=self.snapshot_id,
            created_at=created_at,
            chroma_version=chroma_version,
            chromactl_version=__version__,
            consistency=self.consistency,
            files=[self.entries[k] for k in sorted(self.entries)],
            collections=counts,
            hold_s=round(cut.hold_s, 6),
            chunk_size=CHUNK,
            cut_at=cut.cut_at,
        )
        self.repo.write_manifest(manifest)
        return manifest

    def failed(self, exc: BaseException) -> BaseException:
        """Remove the partial snapshot; the error to raise for ``exc`` (a
        :class:`SnapshotError` unless it is chromactl's own or an interrupt)."""
        _discard(self.repo, self.snapshot_id)
        if isinstance(exc, ChromactlError | KeyboardInterrupt | SystemExit):
            return exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            err = SnapshotError(
                f"no space left on device ({exc.filename or 'the staging directory or target'}): "
                f"staging in {self.engine.staging.parent} (backup.staging_dir) needs room for a copy "
                f"of {SQLITE_NAME} ({_size(self.sqlite_path):,} bytes); a local target for "
                "the compressed snapshot"
            )
        else:
            err = SnapshotError(f"snapshot failed: {type(exc).__name__}: {exc}")
        return err

    def result(self, cut: Cut, manifest: Manifest) -> BackupResult:
        """The outcome for logs, ``--json`` and metrics."""
        return BackupResult(
            outcome="success",
            snapshot_id=self.snapshot_id,
            target=redact_url(self.repo.url),
            duration_s=time.perf_counter() - self.t0,
            bytes=manifest.total_size,
            stored_bytes=manifest.stored_size,
            files=len(manifest.files),
            records=manifest.record_count,
            hold_s=cut.hold_s,
            hold_wait_s=cut.hold_wait_s,
            recopied_files=len(cut.patches),
            recopied_bytes=cut.rewritten_bytes,
            holds_given_back=int(self.phases.get("hold_attempts", 1)) - 1,
            cut_at=manifest.cut_at,
            uploaded_bytes=self.engine.uploader.uploaded_bytes,
            uploaded_chunks=self.engine.uploader.uploaded_chunks,
            reused_chunks=self.engine.uploader.reused_chunks,
            phases=self.phases,
        )


def create_snapshot(
    data_dir: Path,
    repo: Repository,
    hold: WriteHold,
    *,
    chroma_version: str,
    level: int = 3,
    staging_dir: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    lease_ttl_s: float = LEASE_TTL_S,
    lock_ttl_s: float = LOCK_TTL_S,
    lock_wait_s: float = LOCK_WAIT_S,
) -> BackupResult:
    """Take a snapshot of ``data_dir`` into ``repo``; the manifest is written last.

    Offline (``hold`` is :class:`NoHold`) or online (a cut under the write hold): the manifest's
    ``consistency`` says which. A lease (:mod:`.lease`) keeps ``backup prune`` off the
    snapshot while it is written; a shared lock (:mod:`.locks`), held from before the chunk
    store is listed until the manifest is written, keeps prune from deleting a chunk the
    snapshot will name.

    Raises:
        SnapshotError: the data directory is not Chroma's, the hold failed, the
            copy of the database is not sound, or an upload failed. The partial
            snapshot is removed when possible.
        LockError: prune held the repository for longer than ``lock_wait_s``, or this
            backup's lock lapsed (nothing was made complete).
    """
    progress = progress or NullProgress()
    cpus = os.cpu_count() or 1
    data_dir = Path(data_dir)
    if not (data_dir / SQLITE_NAME).is_file():
        raise SnapshotError(f"{data_dir} is not a Chroma data directory (no {SQLITE_NAME})")
    repo.keyring  # noqa: B018 - an encrypted target's key is checked (or made) before anything is written
    snapshot_id = new_snapshot_id()
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    staging = Path(tempfile.mkdtemp(prefix="chromactl-snapshot-", dir=staging_dir))
    # compression runs on every core; the pool is larger so that uploads to object storage overlap
    threads = max(cpus, UPLOAD_THREADS)
    compress_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunk")
    uploader = ChunkUploader(ChunkStore(repo), FrameCompressor(level), compress_pool, 2 * threads, {})
    engine = _Engine(repo, snapshot_id, staging, uploader, progress)
    run = _SnapshotRun(data_dir, repo, hold, engine, workers or 4)
    try:
        repo.snapshot_ids()  # the target answers (with retries) before any data is read
        config = repo.ensure_config()
        if config.chunk_size != CHUNK:
            raise SnapshotError(
                f"{redact_url(repo.url)} stores chunks of {config.chunk_size} bytes; this chromactl "
                f"writes {CHUNK}: back up to a new target"
            )
        with (
            LeaseKeeper(repo, snapshot_id, ttl_s=lease_ttl_s),  # prune leaves the snapshot alone
            RepositoryLock(repo, SHARED, ttl_s=lock_ttl_s, wait_s=lock_wait_s) as lock,  # and its chunks
        ):
            uploader.add_known(uploader.store.listing())
            engine.earlier = earlier_chunks(repo.latest_complete())
            run.first_pass()
            cut = run.cut()
            t_after = time.perf_counter()
            counts = run.upload_database()
            run.catch_up(cut)
            run.phases["after_hold_s"] = time.perf_counter() - t_after
            run.drop_deleted(cut)
            lock.check()  # a lock taken for dead may have let prune remove a chunk: no manifest
            manifest = run.write_manifest(cut, counts, created_at=created_at, chroma_version=chroma_version)
    except BaseException as exc:
        err = run.failed(exc)
        if err is exc:
            raise
        raise err from exc
    finally:
        compress_pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
        progress.close()
    result = run.result(cut, manifest)
    log.info(
        "snapshot %s: %d files, %d bytes, hold %.1f ms (%d bytes compared, %d rewritten)",
        snapshot_id,
        result.files,
        result.bytes,
        cut.hold_s * 1000,
        cut.checked_bytes,
        result.recopied_bytes,
        extra={"snapshot_id": snapshot_id, "hold_s": cut.hold_s},
    )
    return result


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


def _discard(repo: Repository, snapshot_id: str) -> None:
    try:
        repo.delete(snapshot_id, retry=False)
    except Exception:  # best effort; prune removes what is left
        log.warning(
            "could not remove what was uploaded of snapshot %s (it has no manifest: "
            "never restorable; backup prune removes it later)",
            snapshot_id,
        )
