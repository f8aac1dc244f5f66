"""Off-site copies: each complete snapshot, and the journal of continuous backup, copied to
further targets (``backup.copies``), each with its own retention.

A copy target holds the same layout as the primary (docs/backup-format.md), so every command
that reads a repository reads a copy: ``restore --repo <copy>``, ``backup verify``, ``backup
list``. Copying is incremental: a snapshot whose manifest is already in the copy is skipped;
the objects of the others are streamed over, each checked against the manifest's stored
size and SHA-256 on the way, and the manifest written last, so a copy cut short leaves an
incomplete snapshot that the next copy completes (and prune removes if it never is). Journal
segments already in the copy are skipped; heads are copied after their segments.

A format-3 snapshot is copied as the chunks the copy's chunk store lacks (listed once per
copy, each chunk checked against its name on the way and sealed with the copy's own key when
it is encrypted), then its manifest; ``config.json`` first if the copy has none. The copy is
done under a shared lock of the copy target, as a backup is.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any

from chromactl.backup.continuous.timeline import HEAD_NAME, PREFIX, Timeline, segment_name
from chromactl.backup.operations.prune import prune
from chromactl.backup.repository.chunkstore import ChunkStore, decode
from chromactl.backup.repository.locks import SHARED, RepositoryLock
from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.repository.repository import Repository, RepositoryError, repository_of
from chromactl.config import BackupSettings, RetentionSettings
from chromactl.errors import ChromactlError
from chromactl.storage import redact_url

log = logging.getLogger("chromactl.backup.copies")

COPY_BLOCK = 8 << 20


class CopyError(RepositoryError):
    """An object read from the source does not match its manifest: not copied."""


@dataclass
class CopyResult:
    target: str
    outcome: str = "success"
    copied: list[str] = field(default_factory=list)
    already: int = 0
    bytes: int = 0
    #: Chunks copied (format 3): only those the copy lacked.
    chunks: int = 0
    journal_segments: int = 0
    pruned: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copy_object(
    src: Repository, dst: Repository, snapshot_id: str, name: str, size: int, sha256: str
) -> int:
    def copy(reader: IO[bytes]) -> int:
        def write(writer: IO[bytes]) -> int:
            digest = hashlib.sha256()
            n = 0
            while block := reader.read(COPY_BLOCK):
                digest.update(block)
                n += len(block)
                writer.write(block)
            if n != size or digest.hexdigest() != sha256:
                raise CopyError(
                    f"{snapshot_id}/{name} in {src.display} is {n} bytes with sha256 "
                    f"{digest.hexdigest()[:12]}..., its manifest says {size} bytes, {sha256[:12]}...: "
                    "not copied (backup verify names what is damaged)"
                )
            return n

        return dst.write_object(snapshot_id, name, write, what=f"copy {snapshot_id}/{name}")

    return src.read_object(snapshot_id, name, copy, what=f"copy {snapshot_id}/{name}")


class ChunkCopier:
    """Copies chunks into one copy target's chunk store: those it lacks, as listed once."""

    THREADS = 8

    def __init__(self, src: Repository, dst: Repository, lock: RepositoryLock) -> None:
        self.src, self.dst = ChunkStore(src), ChunkStore(dst)
        self.lock = lock
        dst.ensure_config()
        self.have = self.dst.listing()
        self.bytes = 0
        self.chunks = 0

    def _copy(self, chunk: str) -> int:
        frame = self.src.frame(chunk)
        decode(chunk, frame)  # a damaged chunk is not spread to the copy
        return self.dst.put(chunk, frame)

    def copy(self, manifest: Manifest) -> Manifest:
        """The chunks of ``manifest`` the copy lacks; the manifest with the copy's stored sizes."""
        missing = sorted(c for c in manifest.chunk_hashes() if self.dst.key(c) not in self.have)
        with ThreadPoolExecutor(max_workers=self.THREADS, thread_name_prefix="copy-chunk") as pool:
            for chunk, size in zip(missing, pool.map(self._copy, missing), strict=True):
                self.have[self.dst.key(chunk)] = size
                self.bytes += size
                self.chunks += 1
        files = []
        for entry in manifest.files:
            sizes = [self.have[self.dst.key(c)] for c in entry.chunks or ()]
            files.append(replace(entry, chunk_sizes=sizes, stored_size=sum(sizes)))
        self.lock.check()  # the chunks are still there: prune of the copy kept off
        return replace(manifest, files=files)


def copy_snapshot(
    src: Repository, dst: Repository, manifest: Manifest, chunks: ChunkCopier | None = None
) -> int:
    """Copy one complete snapshot (objects or missing chunks, then the manifest); the bytes
    copied. A format-3 snapshot needs ``chunks`` (taken under a shared lock of ``dst``)."""
    if manifest.chunked:
        assert chunks is not None, "a format-3 snapshot is copied with a ChunkCopier"
        before = chunks.bytes
        dst.write_manifest(chunks.copy(manifest))
        return chunks.bytes - before
    copied = 0
    for entry in manifest.files:
        copied += _copy_object(
            src, dst, manifest.snapshot_id, entry.object_name, entry.stored_size, entry.stored_sha256
        )
    dst.write_manifest(manifest)
    return copied


def copy_journal(src: Repository, dst: Repository) -> int:
    """Journal segments the copy lacks, then every head; the segments copied."""
    source, target = Timeline(src), Timeline(dst)
    copied = 0
    have = {h.epoch: set(target.segment_numbers(h.epoch)) for h in target.epochs()}
    for head in source.epochs():
        present = have.get(head.epoch, set())
        for number in source.segment_numbers(head.epoch):
            if number in present:
                continue
            key = f"{PREFIX}/{head.epoch}/{segment_name(number)}"
            data = src.load(key, what=f"read journal {head.epoch}/{number}")
            if data is None:
                raise RepositoryError(
                    f"journal segment {head.epoch}/{number} disappeared while it was copied"
                )
            dst.save(key, data, what=f"copy journal {head.epoch}/{number}")
            copied += 1
        head_key = f"{PREFIX}/{head.epoch}/{HEAD_NAME}"
        dst.save(head_key, head.to_json(), what=f"copy journal head {head.epoch}")
    return copied


def copy_to(src: Repository, dst: Repository, retention: RetentionSettings | None = None) -> CopyResult:
    """Bring ``dst`` up to date with ``src``: snapshots, journal, then ``retention`` (none: keep all)."""
    start = time.perf_counter()
    result = CopyResult(redact_url(dst.url))
    try:
        done = {s.snapshot_id for s in dst.complete()}
        todo = [s.manifest for s in src.complete() if s.manifest is not None]
        result.already = sum(1 for m in todo if m.snapshot_id in done)
        todo = [m for m in todo if m.snapshot_id not in done]
        with ExitStack() as held:
            chunks = None
            if any(m.chunked for m in todo):
                lock = held.enter_context(RepositoryLock(dst, SHARED))  # prune of the copy keeps off
                chunks = ChunkCopier(src, dst, lock)
            for manifest in todo:
                result.bytes += copy_snapshot(src, dst, manifest, chunks)
                result.copied.append(manifest.snapshot_id)
            result.chunks = chunks.chunks if chunks is not None else 0
        result.journal_segments = copy_journal(src, dst)
        if retention is not None:
            result.pruned = prune(dst, retention).removed
    except Exception as exc:
        result.outcome = "failure"
        result.error = f"{type(exc).__name__}: {exc}"
        log.error("copy to %s failed: %s", result.target, result.error)
    result.duration_s = time.perf_counter() - start
    return result


def copy_all(backup: BackupSettings, src: Repository | None = None) -> list[CopyResult]:
    """Every configured copy target brought up to date with the primary target."""
    results = []
    primary = src or repository_of(backup)
    for copy in backup.copies:
        try:
            dst = repository_of(backup, copy)
        except ChromactlError as exc:
            results.append(CopyResult(redact_url(copy.target), "failure", error=str(exc)))
            continue
        result = copy_to(primary, dst, copy.retention or backup.retention)
        log.info(
            "copied %d snapshot(s) (%d bytes) and %d journal segment(s) to %s in %.1f s",
            len(result.copied),
            result.bytes,
            result.journal_segments,
            result.target,
            result.duration_s,
        )
        results.append(result)
    return results
