"""Off-site copies: each complete snapshot, and the journal of continuous backup, copied to
further targets (``backup.copies``), each with its own retention.

A copy target holds the same layout as the primary (docs/backup-format.md), so every command
that reads a repository reads a copy: ``restore --from <copy>``, ``backup verify``, ``backup
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
from pathlib import Path
from typing import Any

from chromactl.config import BackupSettings, CopySettings, RetentionSettings

from .chunkstore import ChunkStore, decode
from .crypto import read_secret
from .locks import SHARED, RepositoryLock
from .manifest import Manifest
from .prune import prune
from .store import Repository, RepositoryError, RetryPolicy, load_credentials_dir, redact_url, storage_options
from .timeline import HEAD_NAME, PREFIX, Timeline, segment_name

log = logging.getLogger("chromactl.backup.copies")

#: Credentials of a copy target: files of its Secret, passed to its client only (another
#: target's keys in the environment stay untouched).
S3_KEYS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}
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


def copy_repository_of(copy: CopySettings, backup: BackupSettings) -> Repository:
    """The repository of one copy target, with its own endpoint and credentials."""
    settings = backup.model_copy(
        update={
            "target": copy.target,
            "endpoint_url": copy.endpoint_url,
            "region": copy.region,
            "storage_options": copy.storage_options,
            "credentials_dir": None,
        }
    )
    options = storage_options(copy.target, settings)
    if copy.credentials_dir is not None:
        scheme = copy.target.split("://", 1)[0] if "://" in copy.target else "file"
        found = _read_secret_dir(copy.credentials_dir)
        if scheme in ("s3", "s3a"):
            options.update({S3_KEYS[k]: v for k, v in found.items() if k in S3_KEYS})
        else:
            load_credentials_dir(copy.credentials_dir)
    secret = read_secret(backup.encryption.key_file, backup.encryption.key_env)
    return Repository(copy.target, options, retry=RetryPolicy.from_settings(backup), secret=secret)


def _read_secret_dir(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        raise RepositoryError(f"credentials directory {directory} does not exist")
    return {
        entry.name: entry.read_text(encoding="utf-8").strip()
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.name.startswith(".")
    }


def _copy_object(
    src: Repository, dst: Repository, snapshot_id: str, name: str, size: int, sha256: str
) -> int:
    def copy() -> int:
        digest = hashlib.sha256()
        n = 0
        with src.open_read(snapshot_id, name) as reader, dst.open_write(snapshot_id, name) as writer:
            while block := reader.read(COPY_BLOCK):
                digest.update(block)
                n += len(block)
                writer.write(block)
        if n != size or digest.hexdigest() != sha256:
            raise CopyError(
                f"{snapshot_id}/{name} in {redact_url(src.url)} is {n} bytes with sha256 "
                f"{digest.hexdigest()[:12]}..., its manifest says {size} bytes, {sha256[:12]}...: "
                "not copied (backup verify names what is damaged)"
            )
        return n

    return dst.retry(f"copy {snapshot_id}/{name}", copy)


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
            path = src.path(PREFIX, head.epoch, segment_name(number))
            data = source.get(path, f"read journal {head.epoch}/{number}")
            if data is None:
                raise RepositoryError(
                    f"journal segment {head.epoch}/{number} disappeared while it was copied"
                )
            target.put(
                dst.path(PREFIX, head.epoch, segment_name(number)),
                data,
                f"copy journal {head.epoch}/{number}",
            )
            copied += 1
        target.put(dst.path(PREFIX, head.epoch, HEAD_NAME), head.to_json(), f"copy journal head {head.epoch}")
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
    primary = src or Repository.from_settings(backup)
    for copy in backup.copies:
        try:
            dst = copy_repository_of(copy, backup)
        except RepositoryError as exc:
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
