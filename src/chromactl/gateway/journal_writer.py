"""What the journal step writes to: this process's spool of the journal (:mod:`chromactl.journal`,
continuous backup), the replication log (high availability), the pod's journal locks, and the
rows of Chroma's catalog its entries carry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

from chromactl import chromadata
from chromactl.gateway.podlocks import PodLocks
from chromactl.journal import Entry, Kind, Spool


class Replication(Protocol):
    """Where a primary's acknowledged writes go besides the spool (``chromactl.ha.node.Node``)."""

    def record(self, entry: Entry) -> int: ...

    async def confirm(self, index: int) -> None: ...


class Journal:
    """What the journal step writes to (see the module doc)."""

    def __init__(
        self,
        directory: Path,
        origin: str,
        database: Path,
        *,
        spool: bool = True,
        replication: Replication | None = None,
    ) -> None:
        self.spool = Spool(directory, origin) if spool else None
        self.origin = origin
        self.replication = replication
        self.locks = PodLocks(directory / "locks")
        self.database = database
        self._n = 0

    def record(self, kind: Kind, **fields: Any) -> int | None:
        """Journal one outcome; its replication index (None without replication)."""
        t = time.time()
        if self.spool is not None:
            entry = self.spool.append(t, kind, **fields)
        else:
            self._n += 1
            entry = Entry(t=t, origin=self.origin, n=self._n, kind=kind, **fields)
        return self.replication.record(entry) if self.replication is not None else None

    async def confirm(self, index: int | None) -> None:
        """Before the write is answered (replication: still the primary; a synchronous standby)."""
        if index is not None and self.replication is not None:
            await self.replication.confirm(index)

    async def catalog(self, collection_ids: list[str]) -> dict[str, object]:
        def read() -> dict[str, object]:
            conn = chromadata.read_only(self.database)
            try:
                conn.isolation_level = None
                return chromadata.read_catalog(conn, collection_ids)
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    async def lookup(self, sql: str, *params: str) -> list[str]:
        def read() -> list[str]:
            conn = chromadata.read_only(self.database)
            try:
                return [str(r[0]) for r in conn.execute(sql, params)]
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        self.locks.close()
