"""Retries as a wrapper: any store's operations retried with backoff, each within a time limit.

A connection the store black-holes can outlast the client's own socket timeouts, so every call
runs on a daemon thread and is abandoned once the operation's time limit has passed.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from chromactl.errors import ChromactlError

from .errors import StoreError
from .store import ObjectStore

log = logging.getLogger("chromactl.storage")
T = TypeVar("T")

#: Errors from object storage client libraries that are worth another attempt.
_TRANSIENT_MODULES = (
    "botocore",
    "aiobotocore",
    "aiohttp",
    "urllib3",
    "requests",
    "azure.core",
    "google.api_core",
    "google.auth.exceptions",
    "gcsfs",
    "fsspec",
)
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one operation: exponential backoff from ``backoff_s`` (doubling, at most
    30 s), at most ``attempts`` tries and ``time_limit_s`` in all."""

    attempts: int = 5
    backoff_s: float = 0.5
    time_limit_s: float = 600.0


def is_transient(exc: BaseException) -> bool:
    """Whether an object storage error may go away on its own (network, timeouts, 5xx)."""
    if isinstance(
        exc,
        ChromactlError
        | FileNotFoundError
        | PermissionError
        | IsADirectoryError
        | NotADirectoryError
        | FileExistsError
        | ValueError
        | TypeError,
    ):
        return False
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    return type(exc).__module__.startswith(_TRANSIENT_MODULES)


class _Overdue(Exception):
    """A call outlived the operation's time limit."""


def _within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or :class:`_Overdue` once ``seconds`` pass; the call is left behind on a
    daemon thread."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="object-storage-call", daemon=True).start()
    if not done.wait(max(seconds, 0.0)):
        raise _Overdue()
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


class RetryingStore:
    """An :class:`~.store.ObjectStore` whose every operation is retried by ``policy``.

    ``display`` is the store's URL fit for messages (no credentials).
    """

    def __init__(self, inner: ObjectStore, policy: RetryPolicy, display: str) -> None:
        self.inner = inner
        self.policy = policy
        self.display = display
        self.url = inner.url

    @property
    def is_local(self) -> bool:
        return self.inner.is_local

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` (one whole operation, safe to repeat) under the policy."""
        policy = self.policy
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return _within(fn, policy.time_limit_s - (time.monotonic() - start))
            except _Overdue:
                raise StoreError(
                    f"object storage at {self.display} did not finish to {what} within "
                    f"backup.op_timeout_s={policy.time_limit_s:g}s (attempt {attempt}); the "
                    "connection stalled"
                ) from None
            except Exception as exc:
                elapsed = time.monotonic() - start
                delay = min(30.0, policy.backoff_s * 2 ** (attempt - 1))
                if not is_transient(exc):
                    raise
                if attempt >= policy.attempts or elapsed + delay >= policy.time_limit_s:
                    raise StoreError(
                        f"object storage at {self.display} failed to {what}: "
                        f"{type(exc).__name__}: {exc} (gave up after {attempt} attempts in "
                        f"{elapsed:.1f}s; limits: backup.retry_attempts={policy.attempts}, "
                        f"backup.op_timeout_s={policy.time_limit_s:g})"
                    ) from None
                log.warning(
                    "%s failed (%s: %s); retry %d in %.1fs", what, type(exc).__name__, exc, attempt, delay
                )
                time.sleep(delay)

    def save(self, key: str, data: bytes, *, what: str = "") -> None:
        self.call(what or f"write {key}", lambda: self.inner.save(key, data))

    def load(self, key: str, *, what: str = "") -> bytes | None:
        return self.call(what or f"read {key}", lambda: self.inner.load(key))

    def exists(self, key: str, *, what: str = "") -> bool:
        return self.call(what or f"look up {key}", lambda: self.inner.exists(key))

    def list(self, prefix: str = "", *, what: str = "") -> list[str]:
        return self.call(what or f"list {prefix or 'the root'}", lambda: self.inner.list(prefix))

    def walk(self, prefix: str, *, what: str = "") -> dict[str, int]:
        return self.call(what or f"list {prefix}", lambda: self.inner.walk(prefix))

    def remove(self, keys: Sequence[str], *, what: str = "") -> None:
        self.call(what or f"remove {len(keys)} objects", lambda: self.inner.remove(keys))

    def remove_tree(self, prefix: str, *, what: str = "") -> None:
        self.call(what or f"remove {prefix}", lambda: self.inner.remove_tree(prefix))

    def load_stream(self, key: str, consume: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        return self.call(what or f"read {key}", lambda: self.inner.load_stream(key, consume))

    def save_stream(self, key: str, produce: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        return self.call(what or f"write {key}", lambda: self.inner.save_stream(key, produce))


def without_retries(store: ObjectStore) -> ObjectStore:
    """The same store, each operation tried once (a clean-up after a failure, which should not
    wait out the retries of a store that just failed)."""
    return store.inner if isinstance(store, RetryingStore) else store
