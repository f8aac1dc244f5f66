"""Restoring a snapshot into a data directory: verify all, then swap atomically.

Nothing is placed until every file is downloaded and matches the manifest.
The files are written to a temporary directory beside the target (inside it
when the target is a mount point, as a PVC is) and swapped in by rename. A
marker in the data directory records which snapshot was restored, so an init
container running ``restore --if-not-restored`` restores once and never again.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.progress import Progress
from chromactl.backup.recovery import replay
from chromactl.backup.recovery.fetch import fetch_verified
from chromactl.backup.repository.manifest import Manifest, parse_version
from chromactl.backup.repository.repository import Repository
from chromactl.backup.snapshot.files import MARKER_NAME, PRE_1X_REPO
from chromactl.errors import ChromactlError
from chromactl.storage import redact_url

log = logging.getLogger("chromactl.backup")

#: Entries a fresh volume may hold that do not count as data.
IGNORED_ENTRIES = frozenset({"lost+found", PRE_1X_REPO})
TMP_PREFIX = ".chromactl-restore-"
OLD_PREFIX = ".chromactl-old-"
#: Free space kept beyond the snapshot's size.
SPACE_MARGIN = 16 << 20


class RestoreError(ChromactlError):
    """The restore was refused or failed; the target was left as it was."""


@dataclass
class RestoreResult:
    outcome: str  # restored | skipped
    snapshot_id: str
    target: str
    bytes: int = 0
    files: int = 0
    message: str = ""
    #: A restore to a point in time: that time, and the journal entries replayed.
    to_time: str | None = None
    journal_entries: int = 0
    #: Records per collection id once Chroma has applied the replayed journal.
    expected_counts: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_marker(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((target / MARKER_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RestoreError(f"restore marker {target / MARKER_NAME} is unreadable: {exc}") from None
    return data if isinstance(data, dict) else None


def _data_entries(target: Path) -> list[str]:
    if not target.exists():
        return []
    if not target.is_dir():
        raise RestoreError(f"{target} exists and is not a directory")
    return sorted(
        e.name
        for e in target.iterdir()
        if e.name not in IGNORED_ENTRIES and not e.name.startswith((TMP_PREFIX, OLD_PREFIX))
    )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _marker(manifest: Manifest, source: str, **extra: Any) -> str:
    return (
        json.dumps(
            {
                "snapshot_id": manifest.snapshot_id,
                "source": source,
                "chroma_version": manifest.chroma_version,
                "restored_at": datetime.now(UTC).isoformat(timespec="seconds"),
                **extra,
            },
            indent=2,
        )
        + "\n"
    )


def check_space(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if free < needed + SPACE_MARGIN:
        raise RestoreError(
            f"not enough space at {where}: the snapshot needs {needed} bytes, "
            f"{free} are free; the target was not touched"
        )


def restore(
    repo: Repository,
    target: Path,
    *,
    snapshot: str = "latest",
    force: bool = False,
    if_not_restored: bool = False,
    target_chroma_version: str | None = None,
    progress: Progress | None = None,
    to_time: str | None = None,
) -> RestoreResult:
    """Restore ``snapshot`` from ``repo`` into ``target`` (Chroma must not be running); with
    ``to_time`` (RFC 3339 or ``latest``), what Chroma held at that time: the base snapshot
    and the shipped journal up to it (:mod:`.replay`).

    Raises:
        RestoreError: refused (non-empty target, newer Chroma, no space) or failed;
            the target is unchanged.
        CorruptSnapshotError: an object does not match the manifest.
    """
    target = Path(target).absolute()
    marker = read_marker(target) if target.is_dir() else None
    if if_not_restored and marker is not None:
        msg = (
            f"{target} already holds restored snapshot {marker.get('snapshot_id')} "
            f"(restored {marker.get('restored_at')}); not restoring again"
        )
        log.info(msg)
        return RestoreResult("skipped", str(marker.get("snapshot_id")), str(target), message=msg)
    point = replay.plan(repo, replay.parse_time(to_time)) if to_time is not None else None
    manifest = point.base if point is not None else repo.resolve(snapshot)
    if target_chroma_version and parse_version(manifest.chroma_version) > parse_version(
        target_chroma_version
    ):
        raise RestoreError(
            f"snapshot {manifest.snapshot_id} was taken from Chroma {manifest.chroma_version}, "
            f"newer than the target's {target_chroma_version}: Chroma migrates data forward "
            "only; upgrade the target first",
            exit_code=2,
        )
    existing = _data_entries(target)
    if existing and not force:
        hint = " and no restore marker" if if_not_restored else ""
        raise RestoreError(
            f"{target} is not empty ({', '.join(existing[:5])}){hint}: refusing to overwrite "
            "it; pass --force to replace its contents",
            exit_code=2,
        )
    in_place = target.is_dir() and os.path.ismount(target)
    parent = target if in_place else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    check_space(parent, manifest.total_size)
    tmp = parent / f"{TMP_PREFIX}{secrets.token_hex(4)}"
    if not in_place:
        tmp = parent / f".{target.name}{TMP_PREFIX}{secrets.token_hex(4)}"
    tmp.mkdir()
    replayed: replay.ReplayResult | None = None
    extra: dict[str, Any] = {}
    try:
        fetch_verified(repo, manifest, tmp, progress=progress)
        if point is not None:
            replayed = _replay(repo, point, tmp)
            extra = {
                "to_time": replay.iso(point.until),
                "journal_entries": replayed.entries,
                "expected_counts": replayed.expected_counts,
            }
        (tmp / MARKER_NAME).write_text(_marker(manifest, redact_url(repo.url), **extra), encoding="utf-8")
        if in_place:
            _swap_contents(tmp, target)
        else:
            _swap_dir(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise RestoreError(
                f"disk full while restoring into {parent}; the target was not touched"
            ) from None
        raise RestoreError(f"restore failed: {exc}; the target was not touched") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("restored snapshot %s into %s", manifest.snapshot_id, target)
    if replayed is not None:
        log.info("replayed %d journal entries up to %s", replayed.entries, extra["to_time"])
    return RestoreResult(
        "restored",
        manifest.snapshot_id,
        str(target),
        manifest.total_size,
        len(manifest.files),
        to_time=extra.get("to_time"),
        journal_entries=replayed.entries if replayed else 0,
        expected_counts=replayed.expected_counts if replayed else None,
    )


def _replay(repo: Repository, point: replay.Plan, staged: Path) -> replay.ReplayResult:
    """The journal from the base's cut to the chosen time, applied to the staged copy."""
    if point.head is None or point.base.cut_at is None:
        return replay.ReplayResult()
    entries = Timeline(repo).read(point.head, after=point.base.cut_at, until=point.until)
    return replay.replay(staged, entries)


def _swap_dir(tmp: Path, target: Path) -> None:
    """Put ``tmp`` in ``target``'s place in one rename; old contents are removed after."""
    kept = target / PRE_1X_REPO
    if kept.is_dir():  # the pre-1.x snapshot stays with the directory
        os.rename(kept, tmp / PRE_1X_REPO)
    _fsync_dir(tmp)
    if not target.exists():
        os.rename(tmp, target)
        _fsync_dir(target.parent)
        return
    if _exchange(tmp, target):
        _fsync_dir(target.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old contents
        return
    old = target.parent / f".{target.name}{OLD_PREFIX}{secrets.token_hex(4)}"
    os.rename(target, old)
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _swap_contents(tmp: Path, target: Path) -> None:
    """For a mount point: move old entries aside, new ones in, the marker last."""
    old = target / f"{OLD_PREFIX}{secrets.token_hex(4)}"
    old.mkdir()
    for name in _data_entries(target):
        os.rename(target / name, old / name)
    for entry in sorted(tmp.iterdir()):
        if entry.name != MARKER_NAME:
            os.rename(entry, target / entry.name)
    os.rename(tmp / MARKER_NAME, target / MARKER_NAME)
    _fsync_dir(target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
