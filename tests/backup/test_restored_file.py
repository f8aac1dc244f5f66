"""Restored files: written past the page cache where the filesystem allows it, through it
otherwise, with the same bytes either way."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from chromactl.backup.recovery import restored
from chromactl.backup.recovery.restored import close_restored, open_restored, pwrite_restored

CHUNK = 1 << 20


def write_chunks(path: Path, content: bytes, *, shuffle: bool = True) -> None:
    fd = open_restored(path, len(content))
    try:
        offsets = list(range(0, len(content), CHUNK))
        if shuffle:
            random.Random(1).shuffle(offsets)
        for off in offsets:
            pwrite_restored(fd, content[off : off + CHUNK], off)
        os.fsync(fd)
    finally:
        close_restored(fd)


def test_big_file_with_a_partial_last_block(tmp_path: Path) -> None:
    content = random.Random(2).randbytes(3 * CHUNK + 12345)
    write_chunks(tmp_path / "f", content)
    assert (tmp_path / "f").read_bytes() == content
    assert not restored._direct  # closed with its file


def test_small_file_is_written_through_the_page_cache(tmp_path: Path) -> None:
    fd = open_restored(tmp_path / "f", 100)
    try:
        assert fd not in restored._direct
        pwrite_restored(fd, b"x" * 100, 0)
    finally:
        close_restored(fd)
    assert (tmp_path / "f").read_bytes() == b"x" * 100


def test_unaligned_offsets_are_written_buffered(tmp_path: Path) -> None:
    content = random.Random(3).randbytes(2 * CHUNK)
    fd = open_restored(tmp_path / "f", len(content))
    try:
        for off in (0, 1000, 5000, CHUNK + 7):  # pieces of odd sizes at odd offsets
            end = {0: 1000, 1000: 5000, 5000: CHUNK + 7, CHUNK + 7: len(content)}[off]
            pwrite_restored(fd, content[off:end], off)
    finally:
        close_restored(fd)
    assert (tmp_path / "f").read_bytes() == content


def test_a_filesystem_refusing_direct_writes_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = random.Random(4).randbytes(2 * CHUNK + 1)
    real = os.pwrite
    direct_fds: set[int] = set()

    def pwrite(fd: int, data: object, offset: int) -> int:
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "refused")
        return real(fd, data, offset)  # type: ignore[arg-type]

    fd = open_restored(tmp_path / "f", len(content))
    try:
        direct_fds.update(restored._direct.values())
        if not direct_fds:
            pytest.skip("this filesystem takes no O_DIRECT writes")
        monkeypatch.setattr(os, "pwrite", pwrite)
        for off in range(0, len(content), CHUNK):
            pwrite_restored(fd, content[off : off + CHUNK], off)
        assert fd not in restored._direct  # buffered from then on
    finally:
        close_restored(fd)
    assert (tmp_path / "f").read_bytes() == content
