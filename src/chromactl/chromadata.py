"""Chroma's on-disk layout: the one place that knows it.

The SQLite file's name and journals, its tables and the queries chromactl runs on them
(collections, segments, records, the write log, schema migrations). Read by the backup
(:mod:`chromactl.backup`), the gateway's metrics (:mod:`chromactl.gateway.chroma_metrics`) and
``chromactl up``; it imports none of them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Chroma's SQLite database, at the top of the persist directory.
SQLITE_NAME = "chroma.sqlite3"
#: SQLite's journals beside it (rollback journal, WAL and its shared memory).
SQLITE_JOURNAL_SUFFIXES = ("-journal", "-wal", "-shm")

#: One row per collection: id, name, database name, tenant.
COLLECTIONS_SQL = """
SELECT c.id, c.name, d.name, d.tenant_id FROM collections c JOIN databases d ON d.id = c.database_id
"""
#: Every segment: id, scope (``METADATA`` or ``VECTOR``), collection id.
SEGMENTS_SQL = "SELECT id, scope, collection FROM segments"
#: The last write-log sequence id each segment has persisted.
MAX_SEQ_SQL = "SELECT segment_id, seq_id FROM max_seq_id"
#: Each vector segment's persisted position: Chroma 1.x records it after it rewrote the
#: segment's HNSW files, so it changes with every rewrite.
GENERATIONS_SQL = """
SELECT m.segment_id, m.seq_id FROM max_seq_id m JOIN segments s ON s.id = m.segment_id
WHERE s.scope = 'VECTOR'
"""
#: Per vector segment: the newest write-log row of its collection (absent once purged).
LOG_HEADS_SQL = """
SELECT s.id, max(q.seq_id) FROM embeddings_queue q
JOIN segments s ON s.collection = substr(q.topic, -36) AND s.scope = 'VECTOR'
GROUP BY s.id
"""
#: Records of one collection: a range of the (segment_id, embedding_id) index.
RECORDS_SQL = "SELECT count(*) FROM embeddings WHERE segment_id = ?"
#: Per collection (the topic ends with its id): write-log rows, and those past the vector
#: segment's persisted ``max_seq_id`` (records not yet in the HNSW files). One scan of the log.
LOG_SQL = """
SELECT substr(q.topic, -36), count(*), sum(q.seq_id > coalesce(m.seq_id, 0))
FROM embeddings_queue q
LEFT JOIN segments s ON s.collection = substr(q.topic, -36) AND s.scope = 'VECTOR'
LEFT JOIN max_seq_id m ON m.segment_id = s.id
GROUP BY q.topic
"""

_COUNT = """(SELECT count(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id
              WHERE s.collection = c.id AND s.scope = 'METADATA')"""
#: Chroma 0.4.15 and later: collections belong to a database of a tenant.
#: Rows: id, name, tenant, database, records.
COUNTS_SQL = f"""SELECT c.id, c.name, d.tenant_id, d.name, {_COUNT}
                   FROM collections c JOIN databases d ON c.database_id = d.id
                  ORDER BY d.tenant_id, d.name, c.name"""
#: Chroma 0.4.0 to 0.4.14: no tenants or databases yet (1.x puts the collections in the defaults).
COUNTS_0_4_SQL = f"""SELECT c.id, c.name, 'default_tenant', 'default_database', {_COUNT}
                       FROM collections c ORDER BY c.name"""
#: Every schema migration the database records.
MIGRATIONS_SQL = "SELECT dir, filename FROM migrations"


def applied_migrations(db: Path) -> set[tuple[str, str]]:
    """(dir, file name) of every schema migration ``chroma.sqlite3`` records (opened read-only).

    Raises:
        sqlite3.Error: the file is not a Chroma database.
    """
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {(str(d), str(f)) for d, f in conn.execute(MIGRATIONS_SQL)}
    finally:
        conn.close()


def collection_rows(db: Path) -> list[tuple[str, str, str, str, int]]:
    """(id, name, tenant, database, records) of every collection of a (copied, unchanging)
    ``chroma.sqlite3``, any Chroma from 0.4.0; empty when it cannot be read."""
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute(COUNTS_SQL if "databases" in tables else COUNTS_0_4_SQL).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [(str(i), str(n), str(t), str(d), int(k)) for i, n, t, d, k in rows]


# -- the catalog: tenants, databases, collections and their segments -------------------------
# Continuous backup records these rows after every change the gateway forwards, and replays
# them (with the records' write-log rows) onto a restored snapshot.

#: Read in full with every catalog change (a few rows each).
CATALOG_TABLES = ("tenants", "databases")
#: The tenants there are, by name (the web console lists those a caller may read).
TENANTS_SQL = "SELECT id FROM tenants ORDER BY id LIMIT ?"
#: One collection's rows: table -> the condition that selects them.
COLLECTION_TABLES = {
    "collections": "id = :c",
    "collection_metadata": "collection_id = :c",
    "segments": "collection = :c",
    "segment_metadata": "segment_id IN (SELECT id FROM segments WHERE collection = :c)",
}
#: What deleting a collection removes besides its catalog rows, children first.
_RECORD_IDS = "(SELECT id FROM embeddings WHERE segment_id IN ({segs}))"
COLLECTION_DATA = (
    f"DELETE FROM embedding_fulltext_search WHERE rowid IN {_RECORD_IDS}",
    f"DELETE FROM embedding_metadata_array WHERE id IN {_RECORD_IDS}",
    f"DELETE FROM embedding_metadata WHERE id IN {_RECORD_IDS}",
    "DELETE FROM embeddings WHERE segment_id IN ({segs})",
    "DELETE FROM max_seq_id WHERE segment_id IN ({segs})",
)
COLLECTION_ID_SQL = """
SELECT c.id FROM collections c JOIN databases d ON d.id = c.database_id
WHERE d.tenant_id = ? AND d.name = ? AND c.name = ?
"""
DATABASE_COLLECTIONS_SQL = """
SELECT c.id FROM collections c JOIN databases d ON d.id = c.database_id
WHERE d.tenant_id = ? AND d.name = ?
"""
#: Collections of a tenant (quotas).
TENANT_COLLECTIONS_SQL = """
SELECT count(*) FROM collections c JOIN databases d ON d.id = c.database_id WHERE d.tenant_id = ?
"""
#: A collection's metadata segment (its records are rows of ``embeddings`` in it).
METADATA_SEGMENT_SQL = "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'"
#: Which of some ids a metadata segment holds (``marks``: one ``?`` per id).
KNOWN_IDS_SQL = "SELECT count(*) FROM embeddings WHERE segment_id = ? AND embedding_id IN ({marks})"
#: Chroma's write-log topic of a collection.
TOPIC_PREFIX = "persistent://default/default/"
#: One write-log row; Chroma applies the rows past a segment's ``max_seq_id`` when it starts.
LOG_INSERT_SQL = """
INSERT INTO embeddings_queue (seq_id, created_at, operation, topic, id, vector, encoding, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

Row = dict[str, object]


def read_only(db: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A read-only connection to a live ``chroma.sqlite3``."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)


def _rows(conn: sqlite3.Connection, sql: str, params: dict[str, object] | None = None) -> list[Row]:
    cur = conn.execute(sql, params or {})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


def read_catalog(conn: sqlite3.Connection, collection_ids: list[str]) -> dict[str, object]:
    """Tenants and databases, and the rows of each of ``collection_ids`` (None: no such
    collection, it was deleted), read in one transaction."""
    conn.execute("BEGIN")
    try:
        out: dict[str, object] = {t: _rows(conn, f"SELECT * FROM {t}") for t in CATALOG_TABLES}
        collections: dict[str, dict[str, list[Row]] | None] = {}
        for cid in collection_ids:
            tables = {
                t: _rows(conn, f"SELECT * FROM {t} WHERE {w}", {"c": cid})
                for t, w in COLLECTION_TABLES.items()
            }
            collections[cid] = tables if tables["collections"] else None
        out["collections"] = collections
        return out
    finally:
        conn.execute("ROLLBACK")


def _insert(conn: sqlite3.Connection, table: str, rows: list[Row]) -> None:
    for row in rows:
        cols = list(row)
        conn.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )


def drop_collection(conn: sqlite3.Connection, collection_id: str) -> list[str]:
    """Remove a collection with its records and write-log rows from a stopped database; the
    ids of its vector segments (their directories are the caller's to remove)."""
    segments = conn.execute(
        "SELECT id, scope FROM segments WHERE collection = ?", (collection_id,)
    ).fetchall()
    seg_ids = [str(s) for s, _ in segments]
    if seg_ids:
        marks = ", ".join("?" * len(seg_ids))
        for sql in COLLECTION_DATA:
            conn.execute(sql.format(segs=marks), seg_ids)
    for table, where in reversed(COLLECTION_TABLES.items()):
        conn.execute(f"DELETE FROM {table} WHERE {where}", {"c": collection_id})
    conn.execute("DELETE FROM embeddings_queue WHERE topic = ?", (TOPIC_PREFIX + collection_id,))
    return [str(s) for s, scope in segments if scope == "VECTOR"]


def apply_catalog(conn: sqlite3.Connection, catalog: dict[str, object]) -> list[str]:
    """Bring a stopped database's catalog to what :func:`read_catalog` read; the vector
    segments of the collections it deleted (their directories are the caller's to remove)."""
    gone: list[str] = []
    collections = catalog.get("collections") or {}
    assert isinstance(collections, dict)
    for cid, tables in collections.items():
        if tables is None:
            gone.extend(drop_collection(conn, cid))
            continue
        for table, where in reversed(COLLECTION_TABLES.items()):
            if table != "collections":
                conn.execute(f"DELETE FROM {table} WHERE {where}", {"c": cid})
        for table in COLLECTION_TABLES:
            _insert(conn, table, tables[table])
    for table in CATALOG_TABLES:
        rows = catalog.get(table)
        if isinstance(rows, list):
            conn.execute(f"DELETE FROM {table}")
            _insert(conn, table, rows)
    return gone
