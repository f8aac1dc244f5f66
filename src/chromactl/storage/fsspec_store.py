"""The store every scheme opens: an fsspec filesystem under a root path.

Each scheme (:mod:`.schemes`) gives the options of its client; this module is the one place
that speaks fsspec.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from .errors import ObjectMissing

T = TypeVar("T")


class FsspecStore:
    """:class:`~.store.ObjectStore` over one fsspec filesystem."""

    def __init__(self, url: str, fs: AbstractFileSystem, root: str) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    # -- whole objects ------------------------------------------------------------------
    def save(self, key: str, data: bytes, *, what: str = "") -> None:
        path = self._path(key)
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{secrets.token_hex(4)}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, key: str, *, what: str = "") -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def exists(self, key: str, *, what: str = "") -> bool:
        return bool(self.fs.exists(self._path(key)))

    # -- listings -----------------------------------------------------------------------
    def list(self, prefix: str = "", *, what: str = "") -> list[str]:
        path = self._path(prefix)
        try:
            try:
                found = self.fs.ls(path, detail=False, refresh=True)
            except TypeError:  # a filesystem without ``refresh``
                found = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in found)

    def walk(self, prefix: str, *, what: str = "") -> dict[str, int]:
        path = self._path(prefix)
        self._forget(path)
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return {}
        finally:  # an object another process uploads later must not read as missing
            self._forget(path)
        base = self.fs._strip_protocol(path).rstrip("/") + "/"
        out: dict[str, int] = {}
        for name, info in found.items():
            relative = str(name)[len(base) :] if str(name).startswith(base) else str(name)
            if not relative.rsplit("/", 1)[-1].startswith("."):  # a local upload's temporary file
                out[relative] = int(info.get("size") or 0)
        return out

    def _forget(self, path: str) -> None:
        """Drop the client's cached listings of ``path`` and below (s3fs keeps them)."""
        self.fs.invalidate_cache(path)
        cache = getattr(self.fs, "dircache", None)
        if cache is not None:
            stripped = self.fs._strip_protocol(path).rstrip("/")
            for cached in [k for k in list(cache) if str(k).startswith(stripped + "/")]:
                cache.pop(cached, None)

    # -- removal ------------------------------------------------------------------------
    def remove(self, keys: Sequence[str], *, what: str = "") -> None:
        paths = [self._path(k) for k in keys]
        if not paths:
            return
        try:
            self.fs.rm(paths if len(paths) > 1 else paths[0])
        except FileNotFoundError:  # some already gone: the others one by one
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path)

    def remove_tree(self, prefix: str, *, what: str = "") -> None:
        path = self._path(prefix)
        with contextlib.suppress(FileNotFoundError):
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        self.fs.invalidate_cache()

    # -- streams ------------------------------------------------------------------------
    def load_stream(self, key: str, consume: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        try:
            fh = self.fs.open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectMissing(f"no object {key}") from None
        with fh:
            return consume(fh)

    def save_stream(self, key: str, produce: Callable[[IO[bytes]], T], *, what: str = "") -> T:
        path = self._path(key)
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open(path, "wb") as fh:
            return produce(fh)


def open_fsspec(url: str, options: dict[str, Any]) -> FsspecStore:
    """The fsspec filesystem of ``url`` with ``options``, as a store."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url, **options)
    return FsspecStore(url, fs, root)
