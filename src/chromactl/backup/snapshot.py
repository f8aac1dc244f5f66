"""Taking a snapshot: copy, hold writes for a short consistent cut, upload, manifest last.

1. First pass, no hold: every segment file is cut into 1 MiB chunks, each chunk
   hashed (xxh3) and compressed into its own zstd frame, streamed straight to the
   repository. ``chroma.sqlite3`` is copied raw to a local staging file (chunk
   digests recorded) because it changes under every write and is checked after.
2. The consistent cut (:mod:`.cut`): hold writes, take SQLite's SHARED lock, and
   for each file whose ``stat`` changed, rewrite only the chunks whose digest
   differs. The hold costs a hash of the changed files, not a copy of the data.
3. Release. ``PRAGMA quick_check`` on the staged SQLite copy (a failed check
   fails the snapshot) while it is compressed to the repository; rebuild the few
   segment objects that changed from their first-pass frames (kept where the chunk
   did not change) and their delta chunks.
4. ``manifest.json`` last. Until it exists the snapshot is incomplete.
"""

from __future__ import annotations

import errno
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
from typing import IO, Any

import zstandard

from chromactl import __version__
from chromactl.errors import ChromactlError

from .chromadb_files import (
    SQLITE_NAME,
    FileState,
    check_sqlite,
    collection_counts,
    segment_files,
)
from .chunks import CHUNK, Copied, FrameCompressor, copy_raw, frames_of, read_chunks
from .cut import Baseline, Patch, catch_up, take_cut
from .hold import NoHold, WriteHold
from .manifest import FileEntry, Manifest, object_name
from .progress import NullProgress, Progress
from .store import Repository, new_snapshot_id, redact_url

log = logging.getLogger("chromactl.backup")


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
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entry(rel: str, copied: Copied, mode: int) -> FileEntry:
    return FileEntry(rel, copied.size, copied.sha256, copied.stored_size, copied.stored_sha256, mode)


@dataclass
class _Engine:
    """One snapshot's shared machinery: repository, staging, compressor, progress."""

    repo: Repository
    snapshot_id: str
    staging: Path
    frames: FrameCompressor
    progress: Progress
    #: Set when one file failed for good: the others stop at their next chunk.
    aborted: threading.Event = field(default_factory=threading.Event)

    def compress_to_repo(self, rel: str, chunks: Callable[[], Iterator[bytes]]) -> Copied:
        """Stream ``chunks()`` (re-startable: retried from the start) to the file's object."""

        def checked() -> Iterator[bytes]:
            for chunk in chunks():
                if self.aborted.is_set():
                    raise _Aborted(ABORTED)
                yield chunk

        def upload() -> Copied:
            if self.aborted.is_set():
                raise _Aborted(ABORTED)
            with self.repo.open_write(self.snapshot_id, object_name(rel)) as dst:
                return self.frames.write(checked(), dst, self.progress.advance)

        try:
            return self.repo.retry(f"upload {object_name(rel)}", upload)
        except _Aborted:
            raise
        except BaseException:
            self.aborted.set()
            raise

    def first_pass_file(self, rel: str, path: Path) -> tuple[Baseline, FileEntry] | None:
        try:
            st = path.stat()
            stat_at = time.time_ns()

            def chunks() -> Iterator[bytes]:
                with open(path, "rb", buffering=0) as src:
                    yield from read_chunks(src)

            copied = self.compress_to_repo(rel, chunks)
        except FileNotFoundError:
            return None  # deleted meanwhile: settled inside the hold
        base = Baseline(FileState.of(st), stat_at, copied.size, copied.digests)
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

    def rebuild(self, rel: str, patch: Patch, has_base: bool) -> Copied:
        """A changed segment file: first-pass content with the delta chunks laid over it.
        Unchanged chunks keep their first-pass frames."""
        staged = self.staging / "rebuilt" / object_name(rel)
        staged.parent.mkdir(parents=True, exist_ok=True)
        with open(staged, "wb") as dst:
            if has_base:
                with self.repo.open_read(self.snapshot_id, object_name(rel)) as src:
                    copied = self._patched(frames_of(src), patch, dst)
            else:
                copied = self._patched(iter(()), patch, dst)
        self.repo.upload(staged, self.snapshot_id, object_name(rel))
        staged.unlink()
        return copied

    def _patched(self, base: Iterator[bytes], patch: Patch, dst: IO[bytes]) -> Copied:
        assert patch.delta is not None
        kept: dict[int, bytes] = {}
        dctx = zstandard.ZstdDecompressor()

        def chunks() -> Iterator[bytes]:
            assert patch.delta is not None
            with open(patch.delta, "rb", buffering=0) as delta:
                for i, offset in enumerate(range(0, patch.size, CHUNK)):
                    n = min(CHUNK, patch.size - offset)
                    frame = next(base, None)
                    if i in patch.changed:
                        chunk = os.pread(delta.fileno(), n, offset)
                    else:
                        old = dctx.decompress(frame) if frame is not None else b""
                        chunk = old[:n]
                        if frame is not None and len(old) == n:
                            kept[i] = frame
                    if len(chunk) != n:
                        raise SnapshotError(f"cannot rebuild chunk {i}: the first-pass copy is short")
                    yield chunk

        return self.frames.write(chunks(), dst, reuse=lambda i, _chunk: kept.pop(i, None))


ABORTED = "stopped: another file of the snapshot failed"


class _Aborted(ChromactlError):
    """Another file of the snapshot failed; this one stopped."""


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
    consistency: str = "online",
) -> BackupResult:
    """Take a snapshot of ``data_dir`` into ``repo``; the manifest is written last.

    Raises:
        SnapshotError: the data directory is not Chroma's, the hold failed, the
            copy of the database is not sound, or an upload failed. The partial
            snapshot is removed when possible.
    """
    progress = progress or NullProgress()
    cpus = os.cpu_count() or 1
    workers = workers or 4
    data_dir = Path(data_dir)
    if not (data_dir / SQLITE_NAME).is_file():
        raise SnapshotError(f"{data_dir} is not a Chroma data directory (no {SQLITE_NAME})")
    t0 = time.perf_counter()
    snapshot_id = new_snapshot_id()
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    phases: dict[str, float] = {}
    staging = Path(tempfile.mkdtemp(prefix="chromactl-snapshot-", dir=staging_dir))
    online = not isinstance(hold, NoHold)
    compress_pool = ThreadPoolExecutor(max_workers=cpus, thread_name_prefix="zstd")
    engine = _Engine(repo, snapshot_id, staging, FrameCompressor(level, compress_pool, 2 * cpus), progress)
    try:
        repo.snapshot_ids()  # the target answers (with retries) before any data is read
        sqlite_path = data_dir / SQLITE_NAME
        files = list(segment_files(data_dir))
        total = sum(_size(p) for _, p in files) + _size(sqlite_path)
        progress.phase("copy (first pass)", total)
        baselines: dict[str, Baseline] = {}
        entries: dict[str, FileEntry] = {}
        staged_sqlite = staging / SQLITE_NAME if online else None
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
            futures = {rel: pool.submit(engine.first_pass_file, rel, path) for rel, path in files}
            failures: list[BaseException] = []
            try:
                if staged_sqlite is not None:
                    baselines[SQLITE_NAME] = engine.stage_sqlite(sqlite_path, staged_sqlite)
                else:
                    done = engine.first_pass_file(SQLITE_NAME, sqlite_path)
                    if done is None:
                        raise SnapshotError(f"{sqlite_path} disappeared during the snapshot")
                    baselines[SQLITE_NAME], entries[SQLITE_NAME] = done
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
                    baselines[rel], entries[rel] = got
            if failures:
                raise failures[0]
        phases["first_pass_s"] = time.perf_counter() - t0
        if staged_sqlite is not None:
            baselines[SQLITE_NAME] = catch_up(sqlite_path, staged_sqlite, baselines[SQLITE_NAME])
            phases["catch_up_s"] = time.perf_counter() - t0 - phases["first_pass_s"]

        cut = take_cut(data_dir, staging, baselines, hold, staged_sqlite=staged_sqlite)
        phases["hold_s"] = cut.hold_s
        phases["hold_checked_bytes"] = float(cut.checked_bytes)
        phases.update({f"hold_{k}": v for k, v in cut.steps_s.items()})
        t_after = time.perf_counter()

        mode = sqlite_path.stat().st_mode & 0o777
        if staged_sqlite is not None:
            progress.phase("upload (database)", staged_sqlite.stat().st_size)

            def sqlite_chunks() -> Iterator[bytes]:
                with open(staged_sqlite, "rb", buffering=0) as src:
                    yield from read_chunks(src)

            # PRAGMA quick_check runs in SQLite's C code beside the compression; a copy
            # that fails it fails the snapshot before its manifest exists
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quick_check") as checker:
                verdict_f = checker.submit(check_sqlite, staged_sqlite)
                sqlite_copy = engine.compress_to_repo(SQLITE_NAME, sqlite_chunks)
                verdict = verdict_f.result()
            phases["quick_check_s"] = time.perf_counter() - t_after
            if verdict != "ok":
                raise SnapshotError(
                    f"the copy of {SQLITE_NAME} failed PRAGMA quick_check ({verdict}); "
                    "no snapshot was written"
                )
            counts = collection_counts(staged_sqlite)
            entries[SQLITE_NAME] = _entry(SQLITE_NAME, sqlite_copy, mode)
        else:
            counts = collection_counts(sqlite_path)
        rebuilt = {rel: p for rel, p in cut.patches.items() if rel != SQLITE_NAME or not online}
        for rel, patch in rebuilt.items():
            copied = engine.rebuild(rel, patch, has_base=rel in entries)
            old_mode = entries[rel].mode if rel in entries else _mode(data_dir / rel)
            entries[rel] = _entry(rel, copied, old_mode)
        phases["after_hold_s"] = time.perf_counter() - t_after

        for rel in set(entries) - cut.present:  # deleted before the cut: drop their objects
            repo.retry(
                f"remove {object_name(rel)}",
                lambda rel=rel: repo.fs.rm(repo.path(snapshot_id, object_name(rel))),
            )
            del entries[rel]
        manifest = Manifest(
            snapshot_id=snapshot_id,
            created_at=created_at,
            chroma_version=chroma_version,
            chromactl_version=__version__,
            consistency=consistency,
            files=[entries[k] for k in sorted(entries)],
            collections=counts,
            hold_s=round(cut.hold_s, 6),
            chunk_size=CHUNK,
        )
        repo.write_manifest(manifest)
    except BaseException as exc:
        _discard(repo, snapshot_id)
        if isinstance(exc, ChromactlError | KeyboardInterrupt | SystemExit):
            raise
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise SnapshotError(
                f"no space left on device ({exc.filename or 'the staging directory or target'}): "
                f"staging in {staging.parent} (backup.staging_dir) needs room for a copy of "
                f"{SQLITE_NAME} ({_size(data_dir / SQLITE_NAME):,} bytes); a local target for "
                "the compressed snapshot"
            ) from exc
        raise SnapshotError(f"snapshot failed: {type(exc).__name__}: {exc}") from exc
    finally:
        compress_pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
        progress.close()
    duration = time.perf_counter() - t0
    result = BackupResult(
        outcome="success",
        snapshot_id=snapshot_id,
        target=redact_url(repo.url),
        duration_s=duration,
        bytes=manifest.total_size,
        stored_bytes=manifest.stored_size,
        files=len(manifest.files),
        records=manifest.record_count,
        hold_s=cut.hold_s,
        hold_wait_s=cut.hold_wait_s,
        recopied_files=len(cut.patches),
        recopied_bytes=sum(p.written for p in cut.patches.values()),
        phases=phases,
    )
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
