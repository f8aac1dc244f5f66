"""What is in a Chroma data directory, and what its SQLite file says."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .manifest import CollectionCount

SQLITE_NAME = "chroma.sqlite3"
#: The restore marker, kept in the data directory and never part of a snapshot.
MARKER_NAME = ".chromactl-restore.json"
#: The snapshot taken before Chroma 1.x first opened a 0.x directory (backup/migrate.py), when
#: it is kept in the directory itself: never part of a snapshot, never replaced by a restore.
PRE_1X_REPO = ".chromactl-pre-1.x"
_SKIP_SUFFIXES = ("-journal", "-wal", "-shm")


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
            if rel.startswith(SQLITE_NAME) and rel.endswith(_SKIP_SUFFIXES):
                continue
            yield rel, base / name


_COUNT = """(SELECT count(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id
              WHERE s.collection = c.id AND s.scope = 'METADATA')"""
#: Chroma 0.4.15 and later: collections belong to a database of a tenant.
_COUNTS = f"""SELECT c.id, c.name, d.tenant_id, d.name, {_COUNT}
                FROM collections c JOIN databases d ON c.database_id = d.id
               ORDER BY d.tenant_id, d.name, c.name"""
#: Chroma 0.4.0 to 0.4.14: no tenants or databases yet (1.x puts the collections in the defaults).
_COUNTS_0_4 = f"""SELECT c.id, c.name, 'default_tenant', 'default_database', {_COUNT}
                    FROM collections c ORDER BY c.name"""


def applied_migrations(db: Path) -> set[tuple[str, str]]:
    """(dir, file name) of every schema migration ``chroma.sqlite3`` records (opened read-only).

    Raises:
        sqlite3.Error: the file is not a Chroma database.
    """
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {(str(d), str(f)) for d, f in conn.execute("SELECT dir, filename FROM migrations")}
    finally:
        conn.close()


def collection_counts(db: Path) -> list[CollectionCount]:
    """Records per collection, read from a (copied) ``chroma.sqlite3``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute(_COUNTS if "databases" in tables else _COUNTS_0_4).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [CollectionCount(str(i), str(n), str(t), str(d), int(k)) for i, n, t, d, k in rows]


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
