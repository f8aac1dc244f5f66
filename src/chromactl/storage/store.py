"""The interface every store offers: whole objects by key, listings, removal, streams.

Keys are ``/``-separated paths relative to the store's root URL (``chunks/ab/ab12...``,
``20261206T231509Z-00a3f1/manifest.json``). ``what`` names the operation for the messages of
:class:`~.retrying.RetryingStore` (``"upload chunk ab12..."``); each method has a default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Protocol, TypeVar

T = TypeVar("T")


class ObjectStore(Protocol):
    """Objects under one root URL."""

    #: The root URL as given (may hold credentials: log :func:`~.registry.redact_url` of it).
    url: str

    @property
    def is_local(self) -> bool:
        """A directory of this machine (its errors, a full disk, do not pass by themselves)."""
        ...

    def save(self, key: str, data: bytes, *, what: str = "") -> None:
        """Write one object whole: a listing or a reader never sees it half-written (a local
        file is fsynced under a temporary name, then renamed into place; object stores put it in
        one request)."""
        ...

    def load(self, key: str, *, what: str = "") -> bytes | None:
        """One object's bytes; None when there is none under ``key``."""
        ...

    def exists(self, key: str, *, what: str = "") -> bool:
        """Whether an object (or a folder of them) is under ``key``."""
        ...

    def list(self, prefix: str = "", *, what: str = "") -> list[str]:
        """The names directly in the folder ``prefix`` ("" for the root) as the store lists them
        now, sorted; none when it is not there."""
        ...

    def walk(self, prefix: str, *, what: str = "") -> dict[str, int]:
        """Every object below the folder ``prefix``, by key relative to it, with its size; one
        listing, never from a cache. Local temporary files (names starting with ``.``) are left
        out."""
        ...

    def remove(self, keys: Sequence[str], *, what: str = "") -> None:
        """Remove objects (in batches where the store deletes in bulk); those already gone are
        fine."""
        ...

    def remove_tree(self, prefix: str, *, what: str = "") -> None:
        """Remove a folder and everything in it; one already gone is fine."""
        ...

    def load_stream(self, key: str, consume: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        """Open ``key`` for reading and hand it to ``consume``; what it returns. A retrying
        store repeats the whole of it. Raises :class:`~.errors.ObjectMissing`."""
        ...

    def save_stream(self, key: str, produce: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        """Open ``key`` for writing and hand it to ``produce``, which writes the object; what
        it returns. A retrying store repeats the whole of it."""
        ...
