"""Chroma's on-disk layout: the one place that knows it.

The SQLite file's name and journals, its tables and the queries chromactl runs on them
(collections, segments, records, the write log, schema migrations). Read by the backup
(:mod:`chromactl.backup`), the gateway's metrics (:mod:`chromactl.gateway.internals`) and
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
