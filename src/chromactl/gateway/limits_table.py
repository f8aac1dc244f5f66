"""The limits' counters: token buckets and in-flight counts in a table of shared memory.

The table is a file the gateway processes of the pod map, each slot locked with ``fcntl``
while it is updated, so that the limits hold for the pod and not per worker. In-flight
counts are kept per process, so a worker that dies leaves none behind. What the counters
count is the limits step's business (:mod:`chromactl.gateway.middleware.limits`).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from chromactl.config import LimitRule

#: Slots of the shared table, and the gateway processes one slot counts in-flight requests for.
SLOTS = 4096
PROCESSES = 64
#: key hash, request tokens, their time, record tokens, their time, then in-flight per process.
_HEAD = struct.Struct("<Qdddd")
_FLIGHT = struct.Struct(f"<{PROCESSES}i")
SLOT_BYTES = _HEAD.size + _FLIGHT.size
PROBES = 8


class Refused(Exception):
    """A request over a limit: ``limit`` names it (the rule's field)."""

    def __init__(self, limit: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after

    @property
    def is_quota(self) -> bool:
        return self.limit.startswith("max_")


class SharedTable:
    """Token buckets and in-flight counts in a file every gateway process maps."""

    def __init__(self, path: Path, process: int) -> None:
        if not 0 <= process < PROCESSES:
            raise ValueError(f"gateway process number {process} is not below {PROCESSES}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < SLOTS * SLOT_BYTES:
            os.ftruncate(self._fd, SLOTS * SLOT_BYTES)
        self._map = mmap.mmap(self._fd, SLOTS * SLOT_BYTES)
        self.process = process
        self._forget_own_flights()

    def _forget_own_flights(self) -> None:
        """A process starting again (a restarted worker) had no request in flight."""
        for slot in range(SLOTS):
            with self._locked(slot):
                self._set_flight(slot, 0)

    @contextlib.contextmanager
    def _locked(self, slot: int) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, slot * SLOT_BYTES)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot * SLOT_BYTES)

    def _slot(self, key: str) -> int:
        """The slot of ``key`` (claimed when free); shared with another key when all probed
        slots are taken (they then share limits)."""
        digest = zlib.crc32(key.encode()) | (len(key) << 32) | 1
        first = digest % SLOTS
        for i in range(PROBES):
            slot = (first + i) % SLOTS
            with self._locked(slot):
                found = _HEAD.unpack_from(self._map, slot * SLOT_BYTES)[0]
                if found == digest:
                    return slot
                if found == 0:
                    _HEAD.pack_into(self._map, slot * SLOT_BYTES, digest, math.nan, 0.0, math.nan, 0.0)
                    return slot
        return first

    def _set_flight(self, slot: int, value: int) -> None:
        struct.pack_into("<i", self._map, slot * SLOT_BYTES + _HEAD.size + 4 * self.process, value)

    def take(self, key: str, rule: LimitRule, records: int, now: float) -> None:
        """Count one request of ``records`` records against ``rule``; :class:`Refused` when
        it is over (nothing is taken then)."""
        slot = self._slot(key)
        base = slot * SLOT_BYTES
        who = key.replace(":", " ", 1)
        with self._locked(slot):
            digest, tokens, stamp, rtokens, rstamp = _HEAD.unpack_from(self._map, base)
            flights = _FLIGHT.unpack_from(self._map, base + _HEAD.size)
            if rule.concurrent_requests is not None and sum(flights) >= rule.concurrent_requests:
                raise Refused(
                    "concurrent_requests",
                    f"{who}: more than {rule.concurrent_requests} requests at once",
                    retry_after=1.0,
                )
            rps = rule.requests_per_second
            if rps is not None:
                burst = float(rule.burst or max(1, math.ceil(rps)))
                tokens = burst if math.isnan(tokens) else min(burst, tokens + (now - stamp) * rps)
                if tokens < 1.0:
                    raise Refused(
                        "requests_per_second",
                        f"{who}: over {rps:g} requests per second",
                        retry_after=(1.0 - tokens) / rps,
                    )
                tokens -= 1.0
                stamp = now
            rpm = rule.records_per_minute
            if rpm is not None and records:
                rate = rpm / 60.0
                rtokens = (
                    float(rpm) if math.isnan(rtokens) else min(float(rpm), rtokens + (now - rstamp) * rate)
                )
                need = min(records, rpm)
                if rtokens < need:
                    raise Refused(
                        "records_per_minute",
                        f"{who}: over {rpm} records written per minute",
                        retry_after=(need - rtokens) / rate,
                    )
                rtokens -= records
                rstamp = now
            _HEAD.pack_into(self._map, base, digest, tokens, stamp, rtokens, rstamp)
            if rule.concurrent_requests is not None:
                self._set_flight(slot, flights[self.process] + 1)

    def done(self, key: str, rule: LimitRule) -> None:
        """The request counted by :meth:`take` has ended."""
        if rule.concurrent_requests is None:
            return
        slot = self._slot(key)
        with self._locked(slot):
            mine = _FLIGHT.unpack_from(self._map, slot * SLOT_BYTES + _HEAD.size)[self.process]
            self._set_flight(slot, max(0, mine - 1))

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
