"""Base copies: how a standby that cannot follow by replay gets the primary's data.

The primary makes a consistent copy the way an online backup does (Chroma facts §5): writes
held at the gateway and drained, ``chroma.sqlite3`` copied with SQLite's online backup API,
every segment directory copied, the replication log's last index noted, writes released.
It streams the copy as a tar. The standby's init container (``chromactl ha init``, before
Chroma starts) unpacks it beside the data, swaps it in, and starts its log at that index.
Writes the replaced data held that the primary lacks are reported (and their records kept
in ``diverged-<time>.rlog``), never dropped silently.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tarfile
import time
from pathlib import Path

from chromactl.chromadata import SQLITE_JOURNAL_SUFFIXES, SQLITE_NAME

from .replication_log import Record

log = logging.getLogger("chromactl.ha.base")

#: chromactl's own entries in a data directory (state, restore markers): never copied or replaced.
OWN_PREFIX = ".chromactl"


def chroma_files(data_dir: Path) -> list[Path]:
    """What a base copy holds: the database and every segment directory (not chromactl's own)."""
    return sorted(
        p
        for p in data_dir.iterdir()
        if not p.name.startswith(OWN_PREFIX) and not p.name.endswith(SQLITE_JOURNAL_SUFFIXES)
    )


def copy_consistent(data_dir: Path, dest: Path) -> None:
    """Copy Chroma's files to ``dest`` (writes must be held and drained by the caller)."""
    dest.mkdir(parents=True)
    for path in chroma_files(data_dir):
        if path.name == SQLITE_NAME:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            target = sqlite3.connect(dest / SQLITE_NAME)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        elif path.is_dir():
            shutil.copytree(path, dest / path.name)
        else:
            shutil.copy2(path, dest / path.name)


def pack(source: Path, tar_path: Path) -> None:
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=path.name)


def install(data_dir: Path, tar_path: Path, work: Path) -> None:
    """Swap the copy in ``tar_path`` in for Chroma's files in ``data_dir`` (Chroma is stopped)."""
    incoming = work / "incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links out of the directory, devices, ...
            tar.extractall(incoming, filter="data")
        else:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()) or member.name.startswith(("/", "..")):
                    raise ValueError(f"a base copy holds only files and folders, not {member.name}")
            tar.extractall(incoming)
    for path in chroma_files(data_dir):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for suffix in SQLITE_JOURNAL_SUFFIXES:
        (data_dir / (SQLITE_NAME + suffix)).unlink(missing_ok=True)
    for path in sorted(incoming.iterdir()):
        os.replace(path, data_dir / path.name)
    shutil.rmtree(incoming, ignore_errors=True)
    tar_path.unlink(missing_ok=True)


def keep_diverged(records: list[Record], work: Path) -> Path | None:
    """Keep the records this pod holds that the primary lacks; where they went."""
    if not records:
        return None
    path = work / f"diverged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.rlog"
    with open(path, "wb") as fh:
        for record in records:
            fh.write(record.encode())
    return path
