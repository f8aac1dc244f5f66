"""Reading snapshots back: every object (formats 1 and 2) or chunk (format 3) is
decompressed and checked against the manifest; a bad chunk is named with every snapshot that
needs it."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from chromactl.backup.progress import NullProgress, Progress
from chromactl.backup.recovery.restored import close_restored, open_restored, pwrite_restored
from chromactl.backup.repository.chunks import frames_of
from chromactl.backup.repository.chunkstore import ChunkError, ChunkStore, describe_bad_chunks
from chromactl.backup.repository.crypto import EncryptionError
from chromactl.backup.repository.manifest import FileEntry, Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.errors import ChromactlError
from chromactl.storage import StoreError

READ_SIZE = 4 << 20
#: Restored bytes after which their write-back to disk is started.
WRITEBACK_EVERY = 32 << 20


class CorruptSnapshotError(ChromactlError):
    """A stored object does not match the manifest: the snapshot is refused."""


@dataclass
class FileCheck:
    path: str
    ok: bool
    problem: str | None = None
    #: Format 3: chunk → what is wrong with it (missing, damaged).
    bad_chunks: dict[str, str] = field(default_factory=dict)


class _WriteBack:
    """Starts the write-back of a file being restored every ``WRITEBACK_EVERY`` bytes done
    (the final fsync then waits for less)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.flushed = 0

    def done(self, size: int) -> None:
        """Everything before ``size`` is written."""
        if self.fd is not None and size - self.flushed >= WRITEBACK_EVERY:
            os.posix_fadvise(self.fd, self.flushed, size - self.flushed, os.POSIX_FADV_DONTNEED)
            self.flushed = size


class _Unframed(Exception):
    """An object whose frames do not state their content size (format 1)."""


class _Decoder:
    """Decompresses frames on a thread pool and writes each at its offset."""

    def __init__(self, pool: ThreadPoolExecutor, window: int) -> None:
        self.pool = pool
        self.window = window
        self._local = threading.local()

    def _decode(self, frame: bytes, fd: int | None, offset: int) -> bytes:
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor()
        raw = dctx.decompress(frame)
        if fd is not None:
            pwrite_restored(fd, raw, offset)
        return raw

    def run(self, src: IO[bytes], fd: int | None, progress: Progress) -> tuple[int, str, int, str]:
        """(stored size, stored sha256, content size, content sha256) of one object."""
        raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
        stored = size = offset = 0
        pending: deque[Future[bytes]] = deque()
        writeback = _WriteBack(fd)

        def collect() -> None:
            nonlocal size
            raw = pending.popleft().result()
            raw_hash.update(raw)
            size += len(raw)
            progress.advance(len(raw))
            writeback.done(size)

        try:
            for frame in frames_of(src, READ_SIZE):
                stored += len(frame)
                stored_hash.update(frame)
                content = zstandard.get_frame_parameters(frame).content_size
                if content == zstandard.CONTENTSIZE_UNKNOWN:
                    raise _Unframed
                pending.append(self.pool.submit(self._decode, frame, fd, offset))
                offset += content
                while len(pending) >= self.window:
                    collect()
            while pending:
                collect()
        finally:  # on an error, no decode may still write after the caller moves on
            for fut in pending:
                fut.cancel()
            wait(pending)
        return stored, stored_hash.hexdigest(), size, raw_hash.hexdigest()


def _stream(src: IO[bytes], fd: int | None, progress: Progress) -> tuple[int, str, int, str]:
    """One thread, any zstd stream (format 1 objects without content sizes)."""
    raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    stored = size = 0
    dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    while chunk := src.read(READ_SIZE):
        stored += len(chunk)
        stored_hash.update(chunk)
        data = dobj.decompress(chunk)
        size += len(data)
        raw_hash.update(data)
        if fd is not None:
            os.write(fd, data)
        progress.advance(len(data))
    return stored, stored_hash.hexdigest(), size, raw_hash.hexdigest()


def _fetch_chunks(
    store: ChunkStore,
    entry: FileEntry,
    chunk_size: int,
    fd: int | None,
    progress: Progress,
    pool: ThreadPoolExecutor,
    window: int,
) -> tuple[int, str, dict[str, str]]:
    """(content size, content sha256, bad chunks) of one format-3 file; each chunk is read on
    ``pool``, checked against its name and written at its offset."""
    whole = hashlib.sha256()
    size = 0
    bad: dict[str, str] = {}
    pending: deque[tuple[str, Future[bytes]]] = deque()

    writeback = _WriteBack(fd)

    def one(i: int, chunk: str) -> bytes:
        content = store.read(chunk)
        if fd is not None:
            pwrite_restored(fd, content, i * chunk_size)
        return content

    def collect() -> None:
        nonlocal size
        chunk, fut = pending.popleft()
        try:
            content = fut.result()
        except ChunkError as exc:
            bad[chunk] = exc.problem
            return
        whole.update(content)
        size += len(content)
        progress.advance(len(content))
        writeback.done(size)

    try:
        for i, chunk in enumerate(entry.chunks or ()):
            pending.append((chunk, pool.submit(one, i, chunk)))
            while len(pending) >= window:
                collect()
        while pending:
            collect()
    finally:  # on an error, no chunk may still write after the caller moves on
        for _, fut in pending:
            fut.cancel()
        wait([fut for _, fut in pending])
    return size, whole.hexdigest(), bad


def _check_chunked(
    repo: Repository,
    manifest: Manifest,
    entry: FileEntry,
    dest: Path | None,
    progress: Progress,
    pool: ThreadPoolExecutor,
    window: int,
) -> FileCheck:
    fd = None
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = open_restored(dest, entry.size)
    try:
        size, sha, bad = _fetch_chunks(
            ChunkStore(repo), entry, manifest.chunk_size, fd, progress, pool, window
        )
        if fd is not None and not bad:
            os.fsync(fd)
    except (StoreError, EncryptionError) as exc:
        return FileCheck(entry.path, False, str(exc))
    finally:
        if fd is not None:
            close_restored(fd)
    if bad:
        return FileCheck(entry.path, False, f"{len(bad)} bad chunk(s)", bad)
    if size != entry.size or sha != entry.sha256:
        return FileCheck(entry.path, False, "content hash or size differs from the manifest")
    if dest is not None:
        os.chmod(dest, entry.mode & 0o777 or 0o644)
    return FileCheck(entry.path, True)


def _check_file(
    repo: Repository,
    manifest: Manifest,
    entry: FileEntry,
    dest: Path | None,
    progress: Progress,
    decoder: _Decoder,
) -> FileCheck:
    if entry.chunked:
        return _check_chunked(repo, manifest, entry, dest, progress, decoder.pool, decoder.window)
    snapshot_id = manifest.snapshot_id
    fd = None
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = open_restored(dest, entry.size)

    def rewind() -> None:
        if fd is not None:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def framed(src: IO[bytes]) -> tuple[int, str, int, str] | None:
        rewind()
        try:
            return decoder.run(src, fd, progress)
        except _Unframed:
            return None

    def unframed(src: IO[bytes]) -> tuple[int, str, int, str]:
        rewind()
        return _stream(src, fd, progress)

    what = f"download {entry.object_name}"
    try:
        found = repo.read_object(snapshot_id, entry.object_name, framed, what=what)
        if found is None:
            found = repo.read_object(snapshot_id, entry.object_name, unframed, what=what)
        stored, stored_sha, size, sha = found
        if fd is not None:
            os.fsync(fd)
    except zstandard.ZstdError as exc:
        return FileCheck(entry.path, False, f"cannot decompress: {exc}")
    except (StoreError, EncryptionError) as exc:
        return FileCheck(entry.path, False, str(exc))
    finally:
        if fd is not None:
            close_restored(fd)
    if stored != entry.stored_size or stored_sha != entry.stored_sha256:
        return FileCheck(entry.path, False, "stored object hash or size differs from the manifest")
    if size != entry.size or sha != entry.sha256:
        return FileCheck(entry.path, False, "content hash or size differs from the manifest")
    if dest is not None:
        os.chmod(dest, entry.mode & 0o777 or 0o644)
    return FileCheck(entry.path, True)


def check_files(
    repo: Repository,
    manifest: Manifest,
    dest_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    workers: int = 4,
) -> list[FileCheck]:
    """Re-hash every object or chunk; with ``dest_dir``, also write the decompressed files
    there. A bad chunk's problem names the chunk and every complete snapshot that needs it."""
    progress = progress or NullProgress()
    progress.phase(f"verify {manifest.snapshot_id}", manifest.total_size)
    cpus = os.cpu_count() or 1
    # chunks are downloaded one object each: more threads than cores, so downloads overlap
    threads = max(cpus, 8) if manifest.chunked else cpus
    # biggest first, so the long file starts at once and small ones fill in around it
    ordered = sorted(manifest.files, key=lambda e: -e.stored_size)
    with (
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="unzstd") as inner,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool,
    ):
        decoder = _Decoder(inner, 2 * threads)
        futures = {
            entry.path: pool.submit(
                _check_file,
                repo,
                manifest,
                entry,
                None if dest_dir is None else dest_dir / entry.path,
                progress,
                decoder,
            )
            for entry in ordered
        }
        checks = [futures[e.path].result() for e in manifest.files]
    bad = {chunk: problem for c in checks for chunk, problem in c.bad_chunks.items()}
    if bad:
        lines = dict(zip(sorted(bad), describe_bad_chunks(repo, bad), strict=True))
        for check in checks:
            if check.bad_chunks:
                check.problem = "; ".join(lines[c] for c in sorted(check.bad_chunks))
    return checks


def fetch_verified(
    repo: Repository, manifest: Manifest, dest_dir: Path, *, progress: Progress | None = None
) -> None:
    """Write every file of ``manifest`` under ``dest_dir``, or raise if any is wrong."""
    for entry in manifest.files:
        parts = Path(entry.path).parts
        if Path(entry.path).is_absolute() or ".." in parts:
            raise CorruptSnapshotError(f"manifest names an unsafe path: {entry.path!r}")
    bad = [c for c in check_files(repo, manifest, dest_dir, progress=progress) if not c.ok]
    if bad:
        listing = "; ".join(f"{c.path}: {c.problem}" for c in bad[:5])
        raise CorruptSnapshotError(
            f"snapshot {manifest.snapshot_id} is corrupt or partial ({len(bad)} bad files: "
            f"{listing}); nothing was restored"
        )
