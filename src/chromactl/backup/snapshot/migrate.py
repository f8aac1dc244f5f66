"""A snapshot before Chroma 1.x first opens a data directory written by Chroma 0.x.

Chroma 1.x opens the data directories of Chroma 0.4 to 0.6 in place and converts them as it
does (it applies its SQLite migrations); Chroma 0.x cannot read them afterwards (0.4 fails on
the changed `collections` table). `chromactl migrate snapshot` runs before Chroma starts (the
chart's `migrate` init container): when the directory was written by 0.x and no 1.x has opened
it yet, it takes an offline snapshot, so going back to 0.x is a restore of that snapshot.
Otherwise it does nothing, so a restart never snapshots again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from chromactl.backup.progress import Progress
from chromactl.backup.snapshot.files import PRE_1X_REPO
from chromactl.backup.snapshot.hold import NoHold
from chromactl.backup.snapshot.run import run_backup
from chromactl.chromadata import SQLITE_NAME, applied_migrations
from chromactl.config import Settings
from chromactl.errors import ChromactlError
from chromactl.storage import redact_url

#: Where, in the data directory, the snapshot goes when no backup target is configured.
LOCAL_REPO = PRE_1X_REPO
#: Written there once the snapshot is complete: a restart finds it and does not snapshot again.
RECORD_NAME = "snapshot.json"
#: The first SQLite migration only Chroma 1.x applies.
FIRST_1X_MIGRATION = ("metadb", "00005-max-seq-id-int.sqlite.sql")

Generation = Literal["empty", "0.x", "1.x"]


def generation(data_dir: Path) -> Generation:
    """Which Chroma last wrote ``data_dir``, by the migrations its SQLite file records."""
    db = data_dir / SQLITE_NAME
    if not db.is_file():
        return "empty"
    try:
        applied = applied_migrations(db)
    except sqlite3.Error as exc:
        raise ChromactlError(f"{db} is not a Chroma database Chroma 0.4 or later wrote: {exc}") from exc
    return "1.x" if FIRST_1X_MIGRATION in applied else "0.x"


@dataclass(frozen=True)
class MigrateResult:
    outcome: Literal["not-needed", "already-taken", "taken"]
    generation: Generation
    snapshot_id: str | None = None
    repository: str | None = None
    taken_at: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _size(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file() and LOCAL_REPO not in p.parts)


def snapshot_before_upgrade(
    settings: Settings, data_dir: Path, *, repo: str | None = None, progress: Progress | None = None
) -> MigrateResult:
    """Snapshot a 0.x directory once, before 1.x opens it; a no-op for any other directory.

    The repository is ``repo``, else the configured backup target, else ``LOCAL_REPO`` in the
    data directory (when the volume has room for it).
    """
    found = generation(data_dir)
    record = data_dir / LOCAL_REPO / RECORD_NAME
    if found != "0.x":
        return MigrateResult("not-needed", found)
    if record.is_file():
        return MigrateResult("already-taken", found, **json.loads(record.read_text()))
    url = repo or settings.backup.target
    if not url:
        local = data_dir / LOCAL_REPO
        needed, free = _size(data_dir), shutil.disk_usage(data_dir).free
        if free < needed:
            raise ChromactlError(
                f"{data_dir} holds data written by Chroma 0.x, which Chroma 1.x converts in place "
                f"(0.x cannot read it afterwards). The snapshot taken first needs up to {needed:,} "
                f"bytes; the volume has {free:,} free. Set backup.target (an object store or a backup "
                "volume) for the snapshot, grow the volume, or set migrate.snapshot=false to go ahead "
                "without one."
            )
        local.mkdir(exist_ok=True)
        url = local.as_uri()
    # Labelled Chroma "0" (any 0.x): a restore into a 0.x server accepts it, into 1.x too.
    as_0x = settings.model_copy(update={"chroma": settings.chroma.model_copy(update={"version": "0"})})
    result = run_backup(as_0x, NoHold(), target=url, data_dir=data_dir, progress=progress)
    if result.outcome != "success":
        raise ChromactlError(
            f"the snapshot before the upgrade to Chroma 1.x failed, Chroma was not started: {result.error}"
        )
    taken = MigrateResult(
        "taken",
        found,
        snapshot_id=result.snapshot_id,
        repository=redact_url(url),
        taken_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    record.parent.mkdir(exist_ok=True)
    tmp = record.with_suffix(".tmp")
    kept = {k: v for k, v in taken.to_dict().items() if k not in ("outcome", "generation")}
    tmp.write_text(json.dumps(kept))
    tmp.replace(record)
    return taken
