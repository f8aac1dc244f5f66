"""Locks shared by the gateway processes of a pod: one per bucket of a key (a collection id).

Each bucket is an ``asyncio`` lock for the requests of this process and a ``fcntl`` lock on
one byte of a file for the other processes of the pod (gateway workers). The journal of
continuous backup and the quota checks take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

#: Keys that hash to the same bucket wait for each other.
BUCKETS = 4096


class PodLocks:
    """One lock per bucket, for this process's requests (asyncio) and across the gateway
    processes of the pod (a ``fcntl`` byte-range lock on one byte of ``path``)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        #: bucket -> (its asyncio lock, requests holding or waiting for it)
        self._local: dict[int, tuple[asyncio.Lock, int]] = {}

    @staticmethod
    def bucket(collection: str) -> int:
        return zlib.crc32(collection.encode()) % BUCKETS

    @contextlib.asynccontextmanager
    async def held(self, bucket: int) -> AsyncIterator[None]:
        lock, users = self._local.get(bucket, (asyncio.Lock(), 0))
        self._local[bucket] = (lock, users + 1)
        try:
            async with lock:
                delay = 0.0005
                while True:
                    try:
                        fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, bucket)
                        break
                    except OSError:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.01)
                try:
                    yield
                finally:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, bucket)
        finally:
            lock, users = self._local[bucket]
            if users == 1:
                del self._local[bucket]
            else:
                self._local[bucket] = (lock, users - 1)

    def close(self) -> None:
        os.close(self._fd)
