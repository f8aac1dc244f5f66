"""Restore to a point in time: the newest snapshot before it, and the journal up to it.

:func:`plan` picks the base (a complete snapshot whose cut lies in an epoch of the shipped
journal that reaches the chosen time); :func:`replay` applies the journal's entries from the
base's cut to that time onto the fetched, verified copy of the base, before it is swapped
in. Catalog entries put back the rows of tenants, databases and collections; record
entries become rows of Chroma's own write log (``embeddings_queue``) past every segment's
position, which Chroma applies to its metadata and vector segments when it starts, with
its own semantics (adds of existing ids, updates of missing ones, partial updates).
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chromactl import chromadata
from chromactl.backup.continuous.timeline import Head, Timeline
from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.errors import ChromactlError
from chromactl.journal import RECORD_OPS, Entry


class PointInTimeError(ChromactlError):
    """No snapshot and journal reach the chosen time."""


def parse_time(text: str) -> float | None:
    """``latest`` → None; an RFC 3339 time (``2026-03-15T12:00:05Z``) → Unix time."""
    if text == "latest":
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PointInTimeError(
            f"--to-time {text!r} is not an RFC 3339 time like 2026-03-15T12:00:05Z, nor 'latest'",
            exit_code=2,
        ) from None
    if when.tzinfo is None:
        raise PointInTimeError(f"--to-time {text!r} needs a time zone (Z or +01:00)", exit_code=2)
    return when.timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Plan:
    base: Manifest
    #: The epoch replayed from the base's cut, or None when the base is the point in time.
    head: Head | None
    until: float


def restorable(bases: list[Manifest], heads: list[Head]) -> list[tuple[float, float]]:
    """The spans of time a restore can reach: from the first snapshot cut inside a journal
    epoch to the epoch's end."""
    out = []
    for head in heads:
        cuts = [b.cut_at for b in bases if b.cut_at is not None and head.started <= b.cut_at <= head.end]
        if cuts:
            out.append((min(cuts), head.end))
    return out


def _ranges(bases: list[Manifest], heads: list[Head]) -> list[str]:
    return [f"{iso(start)} .. {iso(end)}" for start, end in restorable(bases, heads)]


def plan(repo: Repository, to_time: float | None) -> Plan:
    """The base snapshot and the journal epoch that restore ``to_time`` (None: the newest
    point the target holds)."""
    heads = Timeline(repo).epochs()
    bases = [s.manifest for s in repo.complete() if s.manifest is not None]
    with_cut = sorted((b for b in bases if b.cut_at is not None), key=lambda b: b.cut_at or 0.0)
    if to_time is None:
        if not bases:
            raise PointInTimeError(f"no complete snapshot in {repo.url}: nothing to restore")
        reach = [h.end for h in heads if any(h.started <= (b.cut_at or -1) <= h.end for b in with_cut)]
        newest_cut = with_cut[-1].cut_at if with_cut else None
        if not reach or (newest_cut is not None and newest_cut >= max(reach)):
            return Plan(with_cut[-1] if with_cut else bases[-1], None, newest_cut or 0.0)
        to_time = max(reach)
    for base in reversed(with_cut):
        cut = base.cut_at
        assert cut is not None
        if cut > to_time:
            continue
        for head in heads:
            if head.started <= cut <= head.end and to_time <= head.end:
                return Plan(base, head, to_time)
    ranges = _ranges(with_cut, heads)
    raise PointInTimeError(
        f"cannot restore to {iso(to_time)}: no snapshot with a shipped journal reaches it. "
        + (
            f"Points in time the target holds: {'; '.join(ranges)}"
            if ranges
            else "The target holds no journal."
        )
        + " (or restore a snapshot by id with --snapshot)",
        exit_code=2,
    )


# -- applying the journal ----------------------------------------------------------------------


@dataclass
class ReplayResult:
    entries: int = 0
    log_rows: int = 0
    catalog_changes: int = 0
    #: Records per collection id once Chroma has applied the log rows.
    expected_counts: dict[str, int] = field(default_factory=dict)


def _vector(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):  # the Python client's base64 of little-endian float32
        raw = base64.b64decode(value)
        if len(raw) % 4:
            raise ValueError("a base64 embedding is not a whole number of float32")
        return raw
    return struct.pack(f"<{len(value)}f", *value)


def log_rows(entry: Entry) -> list[tuple[int, str, bytes | None, str | None, str | None]]:
    """Chroma's write-log rows for one record entry: (operation, id, vector, encoding,
    metadata JSON with the document and URI under ``chroma:document``/``chroma:uri``)."""
    body = entry.json_body()
    op = RECORD_OPS[entry.op]
    ids = entry.ids if entry.ids is not None else body.get("ids") or []
    if entry.op == "delete":
        return [(op, str(i), None, None, "{}") for i in ids]

    def column(name: str) -> list[Any]:
        values = body.get(name)
        return list(values) if isinstance(values, list) else [None] * len(ids)

    embeddings, metadatas, documents, uris = (
        column(n) for n in ("embeddings", "metadatas", "documents", "uris")
    )
    rows = []
    for i, rid in enumerate(ids):
        vector = _vector(embeddings[i])
        meta: dict[str, Any] = dict(metadatas[i] or {})
        if documents[i] is not None:
            meta["chroma:document"] = documents[i]
        if uris[i] is not None:
            meta["chroma:uri"] = uris[i]
        text = json.dumps(meta, separators=(",", ":")) if meta or entry.op != "update" else None
        rows.append((op, str(rid), vector, "FLOAT32" if vector is not None else None, text))
    return rows


def _record_ids(conn: sqlite3.Connection) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    sql = """SELECT s.collection, e.embedding_id FROM embeddings e
             JOIN segments s ON s.id = e.segment_id AND s.scope = 'METADATA'"""
    for cid, rid in conn.execute(sql):
        out.setdefault(str(cid), set()).add(str(rid))
    return out


def replay(data_dir: Path, entries: list[Entry]) -> ReplayResult:
    """Apply ``entries`` (journal order) to the stopped data directory ``data_dir``."""
    result = ReplayResult(entries=len(entries))
    conn = sqlite3.connect(data_dir / chromadata.SQLITE_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        seq = 1 + max(
            conn.execute("SELECT coalesce(max(seq_id), 0) FROM embeddings_queue").fetchone()[0],
            conn.execute("SELECT coalesce(max(seq_id), 0) FROM max_seq_id").fetchone()[0],
        )
        ids = _record_ids(conn)
        collections = {str(r[0]) for r in conn.execute("SELECT id FROM collections")}
        gone_dirs: list[str] = []
        for entry in entries:
            if entry.kind == "catalog":
                assert entry.catalog is not None
                gone_dirs += chromadata.apply_catalog(conn, entry.catalog)
                for cid, tables in (entry.catalog.get("collections") or {}).items():
                    if tables is None:
                        collections.discard(cid)
                        ids.pop(cid, None)
                    else:
                        collections.add(cid)
                        ids.setdefault(cid, set())
                result.catalog_changes += 1
                continue
            if entry.kind != "records" or entry.collection not in collections:
                continue
            created = datetime.fromtimestamp(entry.t, UTC).strftime("%Y-%m-%d %H:%M:%S")
            topic = chromadata.TOPIC_PREFIX + entry.collection
            known = ids.setdefault(entry.collection, set())
            for op, rid, vector, encoding, meta in log_rows(entry):
                conn.execute(
                    chromadata.LOG_INSERT_SQL, (seq, created, op, topic, rid, vector, encoding, meta)
                )
                seq += 1
                result.log_rows += 1
                if op in (RECORD_OPS["add"], RECORD_OPS["upsert"]):
                    known.add(rid)
                elif op == RECORD_OPS["delete"]:
                    known.discard(rid)
                if vector is not None:
                    conn.execute(
                        "UPDATE collections SET dimension = ? WHERE id = ? AND dimension IS NULL",
                        (len(vector) // 4, entry.collection),
                    )
        conn.execute("COMMIT")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ChromactlError(f"the replayed database fails SQLite's quick_check: {check}")
    finally:
        conn.close()
    for segment in gone_dirs:
        shutil.rmtree(data_dir / segment, ignore_errors=True)
    result.expected_counts = dict(Counter({cid: len(ids.get(cid, ())) for cid in collections}))
    return result
