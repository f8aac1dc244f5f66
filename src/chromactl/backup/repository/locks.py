"""Repository locks: ``locks/<random id>.json``, shared for backups and copies, exclusive for
the deletion of chunks by ``backup prune``.

A backup decides which chunks it need not upload from a listing of the chunk store; prune
deletes chunks that no manifest names. Without a lock, prune could delete a chunk between a
backup's listing and its manifest. So a backup holds a **shared** lock from before it lists
the chunk store until its manifest is written, and prune deletes chunks only under an
**exclusive** lock: the two never overlap.

Acquiring: write our own lock object, then list ``locks/``; if a fresh lock of another
holder conflicts (any lock for an exclusive one, an exclusive one for a shared one), delete
ours, wait (exponential backoff with jitter) and try again, for at most ``wait_s``; then fail
naming the holder. Two processes that write at once both see the other and both back off;
the jitter separates them. This needs a listing that shows an object once its PUT returned
(local disks, S3 since 2020, GCS, Azure).

A lock is rewritten every ``ttl_s / 4`` while held (:class:`~.lease.Refresher`); one not
refreshed for ``ttl_s`` belongs to a process that died: it is ignored, and removed by prune.
A holder that could not refresh its own lock for ``ttl_s`` may have been taken for dead:
:meth:`RepositoryLock.check` then fails, and a backup fails instead of writing a manifest
that might name a chunk removed meanwhile.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chromactl.backup.repository.lease import Refresher, holder
from chromactl.errors import ChromactlError

LOCKS_DIR = "locks"
SHARED = "shared"
EXCLUSIVE = "exclusive"
#: A lock not refreshed for this long belongs to a process that died.
LOCK_TTL_S = 600.0
#: How long a backup (shared) or prune (exclusive) waits for a conflicting lock to go.
LOCK_WAIT_S = 300.0
#: A holder whose refreshes were ever this share of ``ttl_s`` apart takes its lock for lost
#: (the rest of ``ttl_s`` is the margin for the clocks of holder and prune to differ).
LAPSE_FRACTION = 0.5
log = logging.getLogger("chromactl.backup")


class LockError(ChromactlError):
    """The repository is locked by another process, or our own lock was lost."""


@dataclass(frozen=True)
class Lock:
    """One lock object; times are Unix seconds of the holder's clock."""

    kind: str
    host: str
    pid: int
    refreshed_at: float
    ttl_s: float

    def fresh(self, now: float) -> bool:
        return now - self.refreshed_at < self.ttl_s

    def conflicts(self, kind: str) -> bool:
        return EXCLUSIVE in (kind, self.kind)

    def describe(self, lock_id: str) -> str:
        when = datetime.fromtimestamp(self.refreshed_at, UTC).isoformat(timespec="seconds")
        return f"{self.kind} lock {lock_id} of {self.host} pid {self.pid} (refreshed {when})"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Lock | None:
        """The lock, or None when the object is not one (treated as stale)."""
        try:
            raw: Any = json.loads(data)
            return cls(
                str(raw["kind"]),
                str(raw.get("host", "")),
                int(raw.get("pid", 0)),
                float(raw["refreshed_at"]),
                float(raw["ttl_s"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


class LockStore(Protocol):
    """Where locks live: the repository (``store.Repository``)."""

    def write_lock(self, lock_id: str, lock: Lock) -> None: ...

    def read_locks(self) -> dict[str, Lock | None]: ...

    def delete_lock(self, lock_id: str) -> None: ...


class RepositoryLock(Refresher):
    """A shared or exclusive lock of the repository for the length of a ``with`` block."""

    def __init__(
        self,
        repo: LockStore,
        kind: str,
        *,
        ttl_s: float = LOCK_TTL_S,
        wait_s: float = LOCK_WAIT_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(ttl_s=ttl_s, clock=clock)
        self.repo = repo
        self.kind = kind
        self.wait_s = wait_s
        self.sleep = sleep
        self.lock_id = secrets.token_hex(16)
        self.what = f"{kind} lock {self.lock_id}"
        #: The longest time between two refreshes that succeeded, while held.
        self.longest_gap = 0.0

    def write(self, now: float) -> None:
        host, pid = holder()
        self.repo.write_lock(self.lock_id, Lock(self.kind, host, pid, now, self.ttl_s))
        if self.refreshed_at:
            self.longest_gap = max(self.longest_gap, now - self.refreshed_at)

    def release(self) -> None:
        self.repo.delete_lock(self.lock_id)

    def conflicting(self) -> tuple[str, Lock] | None:
        """A fresh lock of another holder that ours cannot coexist with."""
        now = self.clock()
        for lock_id, lock in sorted(self.repo.read_locks().items()):
            if lock_id != self.lock_id and lock is not None and lock.fresh(now) and lock.conflicts(self.kind):
                return lock_id, lock
        return None

    def acquire(self) -> None:
        """Write ours, look for a conflicting one; back off and retry until ``wait_s``."""
        start = self.clock()
        delay = 0.05
        while True:
            self.refreshed_at = 0.0  # a new hold: the gaps of an earlier attempt do not count
            self.refresh()
            try:
                found = self.conflicting()
            except BaseException:
                self._withdraw()
                raise
            if found is None:
                return
            self.release()
            lock_id, lock = found
            if self.clock() - start + delay > self.wait_s:
                raise LockError(
                    f"the repository is locked by the {lock.describe(lock_id)}: "
                    f"{'an' if self.kind == EXCLUSIVE else 'a'} {self.kind} lock could not be "
                    f"taken within {self.wait_s:g}s. Wait for it to "
                    f"finish; a lock of a process that died is ignored {lock.ttl_s:g}s after its "
                    "last refresh"
                )
            log.info("waiting for the %s", lock.describe(lock_id))
            self.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    def _withdraw(self) -> None:
        """Remove our lock after a failed attempt (best effort: it goes stale anyway)."""
        try:
            self.release()
        except Exception as exc:
            log.warning("could not remove the %s: %s: %s", self.what, type(exc).__name__, exc)

    def check(self, *, remote: bool = True) -> None:
        """Fail unless the lock was kept fresh all along (never ``LAPSE_FRACTION * ttl_s``
        between refreshes) and, with ``remote``, is still in the repository."""
        gap = max(self.longest_gap, self.clock() - self.refreshed_at)
        if gap >= LAPSE_FRACTION * self.ttl_s:
            raise LockError(
                f"the {self.what} went {gap:.0f}s without a refresh (ttl {self.ttl_s:g}s): another "
                "process may have taken it for a dead one's; stopped before relying on it"
            )
        if remote and self.lock_id not in self.repo.read_locks():
            raise LockError(f"the {self.what} was removed from the repository; stopped before relying on it")

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        self.start()
        return self


def stale_locks(locks: dict[str, Lock | None], now: float) -> list[str]:
    """Locks not refreshed within their ttl (or unreadable): their holders died."""
    return sorted(i for i, lock in locks.items() if lock is None or not lock.fresh(now))
