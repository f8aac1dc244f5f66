"""Which tenant and database a collection id belongs to (Chroma does not check it)."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from urllib.parse import quote

from chromactl.gateway.upstream import Upstream, read_all


class CollectionResolver:
    """Looks collection ids up in Chroma and caches the answer.

    ``GET /api/v2/tenants/{t}/databases/{d}/collections/by-id/{id}`` answers 404 unless
    the collection lives in ``t``/``d``; a positive answer is cached (LRU, TTL), and
    dropped when the collection, its database or everything is deleted.
    """

    def __init__(self, upstream: Upstream, *, size: int = 10000, ttl_s: float = 300.0) -> None:
        self._upstream = upstream
        self._size = size
        self._ttl_s = ttl_s
        # id -> (expires, tenant, database, name)
        self._cache: OrderedDict[str, tuple[float, str, str, str]] = OrderedDict()
        self.lookups = 0

    def cached(self, collection_id: str) -> tuple[str, str] | None:
        entry = self._cache.get(collection_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._cache[collection_id]
            return None
        self._cache.move_to_end(collection_id)
        return entry[1], entry[2]

    async def belongs(self, tenant: str, database: str, collection_id: str) -> bool:
        """Whether ``collection_id`` names a collection in ``tenant``/``database``."""
        hit = self.cached(collection_id)
        if hit is not None:
            return hit == (tenant, database)
        self.lookups += 1
        path = (
            f"/api/v2/tenants/{quote(tenant, safe='')}/databases/{quote(database, safe='')}"
            f"/collections/by-id/{quote(collection_id, safe='')}"
        )
        resp = await self._upstream.request("GET", path, [(b"accept", b"application/json")], b"")
        status = resp.status
        body = await read_all(resp)
        if status != 200:
            return False
        try:
            doc = json.loads(body)
        except ValueError:
            return False
        if doc.get("id") != collection_id or (doc.get("tenant"), doc.get("database")) != (
            tenant,
            database,
        ):
            return False
        self._remember(collection_id, tenant, database, str(doc.get("name", "")))
        return True

    def _remember(self, collection_id: str, tenant: str, database: str, name: str) -> None:
        self._cache[collection_id] = (time.monotonic() + self._ttl_s, tenant, database, name)
        self._cache.move_to_end(collection_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    def forget(self, *, tenant: str = "", database: str = "", name_or_id: str = "") -> None:
        """Drop entries matching every given field (none given: drop everything)."""
        if not (tenant or database or name_or_id):
            self._cache.clear()
            return
        for cid, (_, t, d, n) in list(self._cache.items()):
            if (
                (not tenant or t == tenant)
                and (not database or d == database)
                and (not name_or_id or name_or_id in (cid, n))
            ):
                del self._cache[cid]
