"""What a snapshot takes from a Chroma data directory (Chroma's layout: :mod:`chromactl.chromadata`)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chromactl.backup.repository.manifest import CollectionCount
from chromactl.chromadata import SQLITE_JOURNAL_SUFFIXES, SQLITE_NAME, collection_rows

#: The restore marker, kept in the data directory and never part of a snapshot.
MARKER_NAME = ".chromactl-restore.json"
#: The snapshot taken before Chroma 1.x first opened a 0.x directory (backup/migrate.py), when
#: it is kept in the directory itself: never part of a snapshot, never replaced by a restore.
PRE_1X_REPO = ".chromactl-pre-1.x"


@dataclass(frozen=True)
class FileState:
    """What tells a changed file apart: size, mtime, inode and ctime."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def segment_files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """Every file except the SQLite database (copied raw and checked at the cut, see
    :mod:`.snapshot`), its journals, the restore marker and chromactl's own temporary files."""
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".chromactl"))
        base = Path(dirpath)
        for name in sorted(filenames):
            rel = (base / name).relative_to(data_dir).as_posix()
            if rel in (SQLITE_NAME, MARKER_NAME):
                continue
            if rel.startswith(SQLITE_NAME) and rel.endswith(SQLITE_JOURNAL_SUFFIXES):
                continue
            yield rel, base / name


def collection_counts(db: Path) -> list[CollectionCount]:
    """Records per collection, read from a (copied) ``chroma.sqlite3``."""
    return [CollectionCount(*row) for row in collection_rows(db)]


def check_sqlite(db: Path) -> str:
    """``PRAGMA quick_check`` of a copy: ``"ok"`` or SQLite's complaint.

    The copy is read through a memory map (half the time of SQLite's own reads: one
    pass over pages already in the page cache, no copy into SQLite's cache)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        conn.execute(f"PRAGMA mmap_size={max(db.stat().st_size, 1)}").fetchall()
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
