"""The lease of a backup in progress: ``<snapshot-id>/lease.json`` in the repository.

A backup writes its lease before the first object, refreshes it every ``ttl_s / 4`` while it
runs and deletes it once the manifest is written (or the partial snapshot discarded). A
snapshot without a manifest whose lease is fresh (refreshed within its ``ttl_s``) is a
backup still running: ``backup prune`` leaves it alone however long it runs. A lease that is
not refreshed in time belongs to a backup that died; the snapshot then falls back to
``retention.incomplete_grace_s`` counted from its id.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Protocol


class LeaseStore(Protocol):
    """Where leases live: the snapshot repository (``store.Repository``)."""

    def write_lease(self, snapshot_id: str, lease: Lease) -> None: ...

    def delete_lease(self, snapshot_id: str) -> None: ...


LEASE_NAME = "lease.json"
#: A lease not refreshed for this long belongs to a backup that died.
LEASE_TTL_S = 600.0
log = logging.getLogger("chromactl.backup")


@dataclass(frozen=True)
class Lease:
    """What a running backup says about itself; times are Unix seconds of the writer's clock."""

    refreshed_at: float
    ttl_s: float
    host: str = ""
    pid: int = 0

    def fresh(self, now: float) -> bool:
        """Whether the writer refreshed it within ``ttl_s`` of ``now``."""
        return now - self.refreshed_at < self.ttl_s

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Lease | None:
        """The lease, or ``None`` when the object is not one (treated as no lease)."""
        try:
            raw: Any = json.loads(data)
            return cls(
                float(raw["refreshed_at"]),
                float(raw["ttl_s"]),
                str(raw.get("host", "")),
                int(raw.get("pid", 0)),
            )
        except (ValueError, TypeError, KeyError):
            return None


class LeaseKeeper:
    """Holds a snapshot's lease for the length of a ``with`` block.

    Written on entry (a failure fails the backup before any data is read), refreshed by a
    daemon thread, deleted on exit. A failed refresh is logged and retried at the next
    interval; the lease then only goes stale if the store stays unreachable for ``ttl_s``.
    """

    def __init__(
        self,
        repo: LeaseStore,
        snapshot_id: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.snapshot_id = snapshot_id
        self.ttl_s = ttl_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _lease(self) -> Lease:
        return Lease(self.clock(), self.ttl_s, socket.gethostname(), os.getpid())

    def refresh(self) -> None:
        """Write the lease with the current time."""
        self.repo.write_lease(self.snapshot_id, self._lease())

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.refresh()
            except Exception as exc:  # the next refresh may work; the backup goes on
                log.warning(
                    "could not refresh the lease of snapshot %s: %s: %s",
                    self.snapshot_id,
                    type(exc).__name__,
                    exc,
                )

    def __enter__(self) -> LeaseKeeper:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="backup-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.repo.delete_lease(self.snapshot_id)
        except Exception as err:  # a lease left behind goes stale after ttl_s
            log.warning(
                "could not remove the lease of snapshot %s: %s: %s", self.snapshot_id, type(err).__name__, err
            )
