"""The limits' hard caps, counted in Chroma's database: collections per tenant, records per collection."""

from __future__ import annotations

from pathlib import Path

from chromactl import chromadata


class Quotas:
    """The hard caps, read from Chroma's database (read-only)."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def _query(self, sql: str, *params: object) -> int:
        conn = chromadata.read_only(self.database)
        try:
            return int(conn.execute(sql, params).fetchone()[0])
        finally:
            conn.close()

    def collections(self, tenant: str) -> int:
        return self._query(chromadata.TENANT_COLLECTIONS_SQL, tenant)

    def records_after(self, collection: str, ids: list[str]) -> int:
        """Records the collection would hold once ``ids`` are in it."""
        conn = chromadata.read_only(self.database)
        try:
            segment = conn.execute(chromadata.METADATA_SEGMENT_SQL, (collection,)).fetchone()
            if segment is None:
                return len(set(ids))
            held = int(conn.execute(chromadata.RECORDS_SQL, (segment[0],)).fetchone()[0])
            known = 0
            unique = sorted(set(ids))
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                marks = ", ".join("?" * len(part))
                sql = chromadata.KNOWN_IDS_SQL.format(marks=marks)
                known += int(conn.execute(sql, (segment[0], *part)).fetchone()[0])
            return held + len(unique) - known
        finally:
            conn.close()
