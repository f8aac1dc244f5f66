"""A standby applies the primary's writes to its own running Chroma, as Chroma applied them there.

- ``records`` entries go to Chroma's HTTP API as the client sent them (``add``, ``update``,
  ``upsert``, ``delete``; a delete by filter as the ids it matched on the primary), so
  Chroma applies them with its own semantics, embeddings and all.
- ``catalog`` entries put the rows of tenants, databases and collections the primary read
  after the change into this Chroma's database (Chroma has no API to create a collection
  with a given id; it reads its catalog from SQLite on each request), so collection ids are
  the same on every pod and a client's collection id works after a failover.
- a ``break`` (a write whose outcome the primary does not know) cannot be applied: the
  standby must be rebuilt from a base copy (:class:`NeedsRebuild`).

Applying twice is harmless (adds of ids Chroma holds are ignored, the rest are idempotent),
so a standby that restarts re-applies from its last saved position.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

import httpx

from chromactl import chromadata
from chromactl.errors import ChromactlError
from chromactl.journal import Entry

log = logging.getLogger("chromactl.ha.applier")

_LOCATION_SQL = """
SELECT d.tenant_id, d.name FROM collections c JOIN databases d ON d.id = c.database_id WHERE c.id = ?
"""
#: Seconds between tries while this pod's Chroma does not answer (it restarts, or starts).
RETRY_S = 0.5


class NeedsRebuild(ChromactlError):
    """What this standby's Chroma holds can no longer follow the primary by replay."""


class LostTrack(NeedsRebuild):
    """A break record: the primary could not tell whether its Chroma took a write it did not
    acknowledge. What this standby applied before it is every acknowledged write until then."""


class Applier:
    """Applies entries to the Chroma at ``url`` whose database is ``database``."""

    def __init__(self, url: str, database: Path, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.client = client or httpx.AsyncClient(timeout=60.0)
        self._where: dict[str, tuple[str, str]] = {}
        #: Writes the primary's Chroma took that this one refused (4xx): counted and logged.
        self.refused = 0

    async def apply(self, entry: Entry) -> None:
        if entry.kind == "break":
            raise LostTrack(f"the primary lost track of a write ({entry.reason})")
        if entry.kind == "catalog":
            assert entry.catalog is not None
            await asyncio.to_thread(self._catalog, entry.catalog)
            return
        await self._records(entry)

    def _catalog(self, catalog: dict[str, object]) -> None:
        conn = sqlite3.connect(self.database, isolation_level=None, timeout=30.0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            gone = chromadata.apply_catalog(conn, catalog)
            conn.execute("COMMIT")
        finally:
            conn.close()
        collections = catalog.get("collections") or {}
        assert isinstance(collections, dict)
        for cid in collections:
            self._where.pop(cid, None)
        for segment in gone:
            log.info("collection segment %s deleted on the primary", segment)

    def _location(self, collection: str) -> tuple[str, str] | None:
        found = self._where.get(collection)
        if found is None:
            conn = chromadata.read_only(self.database)
            try:
                row = conn.execute(_LOCATION_SQL, (collection,)).fetchone()
            finally:
                conn.close()
            if row is None:
                return None
            found = self._where[collection] = (str(row[0]), str(row[1]))
        return found

    async def _records(self, entry: Entry) -> None:
        where = await asyncio.to_thread(self._location, entry.collection)
        if where is None:
            # Deleted on the primary before this write's entry (a write that raced the delete).
            self.refused += 1
            log.info("skipped a %s to collection %s, which is gone", entry.op, entry.collection)
            return
        body = entry.body
        if entry.op == "delete" and entry.ids is not None:
            body = json.dumps({"ids": entry.ids}).encode()
        tenant, database = where
        path = f"/api/v2/tenants/{tenant}/databases/{database}/collections/{entry.collection}/{entry.op}"
        while True:
            try:
                answer = await self.client.post(
                    self.url + path, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError as exc:
                log.warning("Chroma does not answer (%s); trying again", exc)
                await asyncio.sleep(RETRY_S)
                continue
            if answer.status_code >= 500:
                log.warning(
                    "Chroma answered %d to a replicated %s; trying again", answer.status_code, entry.op
                )
                await asyncio.sleep(RETRY_S)
                continue
            if answer.status_code >= 400:
                self.refused += 1
                log.warning(
                    "Chroma refused a replicated %s to %s (%d): %s",
                    entry.op,
                    entry.collection,
                    answer.status_code,
                    answer.text[:200],
                )
            return

    async def aclose(self) -> None:
        await self.client.aclose()
