"""What the journal step writes to: this process's spool of the journal (:mod:`chromactl.journal`)
and the pod's journal locks, and the rows of Chroma's catalog its entries carry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from chromactl import chromadata
from chromactl.gateway.podlocks import PodLocks
from chromactl.journal import Kind, Spool


class Journal:
    """What the journal step writes to: this process's spool and the pod's journal locks."""

    def __init__(self, directory: Path, origin: str, database: Path) -> None:
        self.spool = Spool(directory, origin)
        self.locks = PodLocks(directory / "locks")
        self.database = database

    def record(self, kind: Kind, **fields: Any) -> None:
        self.spool.append(time.time(), kind, **fields)

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
        self.spool.close()
        self.locks.close()
