"""Writing the files a restore produces.

A restored file is written once, at known offsets, and fsynced before the restore reports
success, so its blocks go to the disk with ``O_DIRECT`` where the filesystem allows it: each
block-aligned piece is copied into a reused, page-aligned buffer and written past the page
cache. Buffered writes of a big file cost a copy into freshly allocated page-cache memory
(slow on a VM whose host took that memory back), write-back and an fsync that waits for it;
measured in bench/backup/README.md. The file is first given its final size with
``fallocate``, so the space is reserved before anything is written (a full disk fails at
once) and parallel direct writes do not extend the file one at a time.

A piece that is not block-aligned (the end of a file), a small file, and any file on a
filesystem that refuses ``O_DIRECT`` or ``fallocate`` take the buffered path; the fsync
covers both.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
from pathlib import Path

#: Offsets and lengths of direct writes are multiples of this (the page size: above every
#: common logical block size).
BLOCK = 4096
#: Files smaller than this are written through the page cache.
DIRECT_MIN = 1 << 20

#: buffered fd → the O_DIRECT fd on the same file.
_direct: dict[int, int] = {}
_local = threading.local()


def _fallocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes (and set the size); a filesystem without ``fallocate`` is
    skipped, not emulated by writing zeros as ``posix_fallocate`` would."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fn(fd, 0, 0, size) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return
    raise OSError(err, os.strerror(err))


def open_restored(path: Path, size: int) -> int:
    """A new file at ``path`` (truncated, mode 0600) that will hold ``size`` bytes: write
    it with :func:`pwrite_restored`, close it with :func:`close_restored`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or size < DIRECT_MIN:
        return fd
    try:
        _fallocate(fd, size)
        direct = os.open(path, os.O_WRONLY | flag)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            os.close(fd)
            raise
        return fd
    _direct[fd] = direct
    return fd


def _buffer(size: int) -> mmap.mmap:
    buf: mmap.mmap | None = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = mmap.mmap(-1, max(size, 1 << 20))
    return buf


def _pwrite_buffered(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def pwrite_restored(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset`` of a file from :func:`open_restored`."""
    view = memoryview(data)
    direct = _direct.get(fd)
    aligned = len(view) - len(view) % BLOCK
    if direct is not None and offset % BLOCK == 0 and aligned:
        buf = _buffer(aligned)
        buf[:aligned] = view[:aligned]
        try:
            done = os.pwrite(direct, memoryview(buf)[:aligned], offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _direct.pop(fd, None)  # the filesystem refuses these writes: buffered from now on
            done = 0
        view, offset = view[done:], offset + done
    _pwrite_buffered(fd, view, offset)


def close_restored(fd: int) -> None:
    direct = _direct.pop(fd, None)
    try:
        if direct is not None:
            os.close(direct)
    finally:
        os.close(fd)
