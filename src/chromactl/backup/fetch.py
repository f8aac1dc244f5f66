"""Reading snapshots back: every object is decompressed and checked against the manifest."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zstandard

from chromactl.errors import ChromactlError

from .manifest import FileEntry, Manifest
from .progress import NullProgress, Progress
from .store import Repository, RepositoryError

CHUNK = 4 << 20


class CorruptSnapshotError(ChromactlError):
    """A stored object does not match the manifest: the snapshot is refused."""


@dataclass(frozen=True)
class FileCheck:
    path: str
    ok: bool
    problem: str | None = None


def _check_file(
    repo: Repository,
    snapshot_id: str,
    entry: FileEntry,
    dest: Path | None,
    progress: Progress,
) -> FileCheck:
    raw_hash = hashlib.sha256()
    stored_hash = hashlib.sha256()
    size = stored = 0
    out = None
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = open(dest, "wb")  # noqa: SIM115 - closed in finally
    try:
        # Format 2 objects are one frame per chunk; format 1, one frame per file.
        dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        with repo.open_read(snapshot_id, entry.object_name) as src:
            while chunk := src.read(CHUNK):
                stored += len(chunk)
                stored_hash.update(chunk)
                data = dobj.decompress(chunk)
                size += len(data)
                raw_hash.update(data)
                if out is not None:
                    out.write(data)
                progress.advance(len(data))
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    except zstandard.ZstdError as exc:
        return FileCheck(entry.path, False, f"cannot decompress: {exc}")
    except RepositoryError as exc:
        return FileCheck(entry.path, False, str(exc))
    finally:
        if out is not None:
            out.close()
    if stored != entry.stored_size or stored_hash.hexdigest() != entry.stored_sha256:
        return FileCheck(entry.path, False, "stored object hash or size differs from the manifest")
    if size != entry.size or raw_hash.hexdigest() != entry.sha256:
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
    """Re-hash every object; with ``dest_dir``, also write the decompressed files there."""
    progress = progress or NullProgress()
    progress.phase(f"verify {manifest.snapshot_id}", manifest.total_size)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                _check_file,
                repo,
                manifest.snapshot_id,
                entry,
                None if dest_dir is None else dest_dir / entry.path,
                progress,
            )
            for entry in manifest.files
        ]
        return [f.result() for f in futures]


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
