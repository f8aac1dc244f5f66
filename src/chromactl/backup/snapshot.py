"""Taking a snapshot: copy, hold writes for a short consistent cut, upload, manifest last.

1. First pass, no hold: every segment file is compressed and uploaded straight
   from the data directory while Chroma keeps serving; its state (size, mtime,
   inode, ctime) is recorded before it is read.
2. Hold writes (the gateway drains in-flight writes; new ones wait).
3. Inside the hold: SQLite's online backup API copies ``chroma.sqlite3`` to a
   local staging directory, and only the segment files whose state changed
   since the first pass (or that were modified too close to it to trust the
   timestamp) are copied there too.
4. Release writes; upload the staged files over their first-pass objects, then
   write ``manifest.json``. Until the manifest exists the snapshot is incomplete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from chromactl import __version__
from chromactl.errors import ChromactlError

from .chromadb_files import (
    SQLITE_NAME,
    FileState,
    backup_sqlite,
    collection_counts,
    segment_files,
)
from .hold import WriteHold
from .manifest import FileEntry, Manifest, object_name
from .progress import NullProgress, Progress
from .store import Repository, new_snapshot_id, redact_url

log = logging.getLogger("chromactl.backup")

CHUNK = 4 << 20
#: A file modified this close to its first-pass stat may change again within
#: the same timestamp tick; it is always re-copied inside the hold.
RACY_WINDOW_NS = 1_000_000_000
#: Files larger than this are compressed with zstd's own worker threads.
BIG_FILE = 32 << 20


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


def compress_upload(
    source: Path,
    repo: Repository,
    snapshot_id: str,
    rel: str,
    *,
    level: int,
    progress: Progress,
) -> FileEntry:
    """Stream one file through zstd to the repository, hashing both sides."""
    raw_hash = hashlib.sha256()
    stored_hash = hashlib.sha256()
    size = stored = 0
    threads = (os.cpu_count() or 1) if source.stat().st_size > BIG_FILE else 0
    cobj = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True).compressobj(
        size=-1
    )
    with open(source, "rb") as src, repo.open_write(snapshot_id, object_name(rel)) as dst:
        mode = os.fstat(src.fileno()).st_mode & 0o777
        while chunk := src.read(CHUNK):
            size += len(chunk)
            raw_hash.update(chunk)
            out = cobj.compress(chunk)
            if out:
                stored_hash.update(out)
                stored += len(out)
                dst.write(out)
            progress.advance(len(chunk))
        out = cobj.flush()
        stored_hash.update(out)
        stored += len(out)
        dst.write(out)
    return FileEntry(rel, size, raw_hash.hexdigest(), stored, stored_hash.hexdigest(), mode)


@dataclass
class _Pass1:
    entries: dict[str, FileEntry] = field(default_factory=dict)
    states: dict[str, FileState] = field(default_factory=dict)
    stat_at_ns: dict[str, int] = field(default_factory=dict)


def _upload_many(
    jobs: Iterable[tuple[str, Path]],
    repo: Repository,
    snapshot_id: str,
    *,
    level: int,
    progress: Progress,
    workers: int,
) -> dict[str, FileEntry]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            rel: pool.submit(
                compress_upload, path, repo, snapshot_id, rel, level=level, progress=progress
            )
            for rel, path in jobs
        }
        return {rel: fut.result() for rel, fut in futures.items()}


def _first_pass(
    data_dir: Path, repo: Repository, snapshot_id: str, *, level: int, progress: Progress,
    workers: int,
) -> _Pass1:
    result = _Pass1()
    files = list(segment_files(data_dir))
    jobs: list[tuple[str, Path]] = []
    total = 0
    for rel, path in files:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        result.stat_at_ns[rel] = time.time_ns()
        result.states[rel] = FileState.of(st)
        total += st.st_size
        jobs.append((rel, path))
    progress.phase("copy (first pass)", total)

    def upload(rel: str, path: Path) -> FileEntry | None:
        try:
            return compress_upload(path, repo, snapshot_id, rel, level=level, progress=progress)
        except FileNotFoundError:
            return None  # deleted meanwhile: settled inside the hold

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {rel: pool.submit(upload, rel, path) for rel, path in jobs}
        for rel, fut in futures.items():
            entry = fut.result()
            if entry is not None:
                result.entries[rel] = entry
    return result


@dataclass
class _Cut:
    recopy: dict[str, Path]
    present: set[str]
    hold_s: float
    hold_wait_s: float


def _consistent_cut(
    data_dir: Path, staging: Path, first: _Pass1, hold: WriteHold
) -> _Cut:
    recopy: dict[str, Path] = {}
    present: set[str] = set()
    start = time.perf_counter()
    with hold:
        backup_sqlite(data_dir / SQLITE_NAME, staging / SQLITE_NAME)
        for rel, path in segment_files(data_dir):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            present.add(rel)
            state = FileState.of(st)
            before = first.states.get(rel)
            racy = before is not None and first.stat_at_ns[rel] - before.mtime_ns < RACY_WINDOW_NS
            if before is None or before != state or racy or rel not in first.entries:
                dest = staging / "files" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                os.chmod(dest, st.st_mode & 0o777)
                recopy[rel] = dest
    hold_s = time.perf_counter() - start
    return _Cut(recopy, present, hold_s, getattr(hold, "waited_s", 0.0))


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
        SnapshotError: the data directory is not Chroma's, the hold failed, or
            an upload failed. The partial snapshot is removed when possible.
    """
    progress = progress or NullProgress()
    workers = workers or min(4, (os.cpu_count() or 1) + 1)
    data_dir = Path(data_dir)
    if not (data_dir / SQLITE_NAME).is_file():
        raise SnapshotError(f"{data_dir} is not a Chroma data directory (no {SQLITE_NAME})")
    t0 = time.perf_counter()
    snapshot_id = new_snapshot_id()
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    phases: dict[str, float] = {}
    staging = Path(tempfile.mkdtemp(prefix="chromactl-snapshot-", dir=staging_dir))
    try:
        first = _first_pass(
            data_dir, repo, snapshot_id, level=level, progress=progress, workers=workers
        )
        phases["first_pass_s"] = time.perf_counter() - t0
        cut = _consistent_cut(data_dir, staging, first, hold)
        phases["hold_s"] = cut.hold_s
        t_up = time.perf_counter()
        staged = {SQLITE_NAME: staging / SQLITE_NAME, **cut.recopy}
        progress.phase("upload (consistent cut)", sum(p.stat().st_size for p in staged.values()))
        uploaded = _upload_many(
            staged.items(), repo, snapshot_id, level=level, progress=progress, workers=workers
        )
        phases["second_upload_s"] = time.perf_counter() - t_up
        entries = {rel: e for rel, e in first.entries.items() if rel in cut.present}
        entries.update(uploaded)
        counts = collection_counts(staging / SQLITE_NAME)
        manifest = Manifest(
            snapshot_id=snapshot_id,
            created_at=created_at,
            chroma_version=chroma_version,
            chromactl_version=__version__,
            consistency=consistency,
            files=[entries[k] for k in sorted(entries)],
            collections=counts,
            hold_s=round(cut.hold_s, 6),
        )
        stale = set(first.entries) - set(entries)
        for rel in stale:  # files deleted before the cut: drop their objects
            repo.fs.rm(repo.path(snapshot_id, object_name(rel)))
        repo.write_manifest(manifest)
    except BaseException as exc:
        _discard(repo, snapshot_id)
        if isinstance(exc, ChromactlError | KeyboardInterrupt | SystemExit):
            raise
        raise SnapshotError(f"snapshot failed: {type(exc).__name__}: {exc}") from exc
    finally:
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
        recopied_files=len(cut.recopy),
        recopied_bytes=sum(uploaded[r].size for r in cut.recopy),
        phases=phases,
    )
    log.info(
        "snapshot %s: %d files, %d bytes, hold %.1f ms",
        snapshot_id, result.files, result.bytes, cut.hold_s * 1000,
        extra={"snapshot_id": snapshot_id, "hold_s": cut.hold_s},
    )
    return result


def _discard(repo: Repository, snapshot_id: str) -> None:
    try:
        repo.delete(snapshot_id)
    except Exception:  # best effort; prune removes what is left
        log.warning("could not remove the partial snapshot %s", snapshot_id)
