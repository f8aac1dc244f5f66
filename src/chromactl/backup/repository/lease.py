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


class Refresher:
    """Something a running process keeps fresh in the repository for a ``with`` block.

    :meth:`refresh` runs on entry (a failure fails the caller before it starts), then every
    ``ttl_s / 4`` on a daemon thread; :meth:`release` on exit. A failed refresh is logged and
    retried at the next interval: what it keeps fresh only goes stale if the store stays
    unreachable for ``ttl_s``. :attr:`refreshed_at` is the clock time of the last refresh
    that succeeded.
    """

    what = "lease"

    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.refreshed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, now: float) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Write it with the current time."""
        now = self.clock()
        self.write(now)
        self.refreshed_at = now

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.refresh()
            except Exception as exc:  # the next refresh may work; the holder goes on
                log.warning("could not refresh the %s: %s: %s", self.what, type(exc).__name__, exc)

    def start(self) -> None:
        """The refresh thread (after the first :meth:`refresh`)."""
        self._thread = threading.Thread(target=self._run, name=f"refresh-{self.what}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Refresher:
        self.refresh()
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.release()
        except Exception as err:  # what is left behind goes stale after ttl_s
            log.warning("could not remove the %s: %s: %s", self.what, type(err).__name__, err)


def holder() -> tuple[str, int]:
    """Who holds a lease or lock: this host and process."""
    return socket.gethostname(), os.getpid()


class LeaseKeeper(Refresher):
    """Holds a snapshot's lease for the length of a ``with`` block (see :class:`Refresher`)."""

    def __init__(
        self,
        repo: LeaseStore,
        snapshot_id: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ttl_s=ttl_s, clock=clock)
        self.repo = repo
        self.snapshot_id = snapshot_id
        self.what = f"lease of snapshot {snapshot_id}"

    def write(self, now: float) -> None:
        host, pid = holder()
        self.repo.write_lease(self.snapshot_id, Lease(now, self.ttl_s, host, pid))

    def release(self) -> None:
        self.repo.delete_lease(self.snapshot_id)
