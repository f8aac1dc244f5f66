"""Chunked copies: fixed-size chunks, a fast hash per chunk, one zstd frame per chunk.

Every file is cut into ``CHUNK`` (1 MiB) pieces. A piece's xxh3-128 digest tells
whether it changed since it was copied (the consistent cut, :mod:`.cut`); a piece is
compressed into its own zstd frame, so pieces compress in parallel and the frames of a file,
concatenated, are an ordinary zstd stream (``zstd -d`` reads it). The chunk store
(:mod:`.chunkstore`) keeps each distinct piece once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import xxhash
import zstandard

CHUNK = 1 << 20


def digest(data: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data)


@dataclass
class Copied:
    """What one pass wrote: sizes, hashes of content and stored bytes, chunk digests (xxh3,
    for the cut) and, into a chunk store, each chunk's SHA-256 and stored size."""

    size: int = 0
    sha256: str = ""
    stored_size: int = 0
    stored_sha256: str = ""
    digests: list[bytes] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)


_MAGIC = 0xFD2FB528
_FCS_BYTES = (0, 2, 4, 8)
_DICT_BYTES = (0, 1, 2, 4)


def frame_length(buf: bytes | bytearray, pos: int) -> int | None:
    """Length of the zstd frame starting at ``pos``, or None if ``buf`` ends inside it."""
    if len(buf) - pos < 5:
        return None
    magic = int.from_bytes(buf[pos : pos + 4], "little")
    if magic != _MAGIC:
        raise zstandard.ZstdError(f"not a zstd frame at offset {pos}")
    fhd = buf[pos + 4]
    single = (fhd >> 5) & 1
    fcs = _FCS_BYTES[fhd >> 6] or (1 if single else 0)
    p = pos + 5 + (0 if single else 1) + _DICT_BYTES[fhd & 3] + fcs
    while True:
        if len(buf) - p < 3:
            return None
        header = int.from_bytes(buf[p : p + 3], "little")
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:
            raise zstandard.ZstdError("corrupt zstd block header")
        p += 3 + (1 if kind == 1 else size)
        if header & 1:
            break
    p += 4 if (fhd >> 2) & 1 else 0
    return p - pos if p <= len(buf) else None


def frames_of(fh: IO[bytes], read_size: int = 4 * CHUNK) -> Iterator[bytes]:
    """The zstd frames of an object, one at a time."""
    buf = bytearray()
    while True:
        data = fh.read(read_size)
        buf += data
        pos = 0
        while (n := frame_length(buf, pos)) is not None:
            yield bytes(buf[pos : pos + n])
            pos += n
        del buf[:pos]
        if not data:
            break
    if buf:
        raise zstandard.ZstdError("compressed object is truncated")


def read_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


class FrameCompressor:
    """Compresses chunks into independent zstd frames, one compressor per thread."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._local = threading.local()

    def compress(self, chunk: bytes) -> bytes:
        """One chunk as one zstd frame (with its content size and checksum)."""
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(
                level=self._level, write_checksum=True, write_content_size=True
            )
        return bytes(cctx.compress(chunk))


def copy_raw(src: IO[bytes], dest_fd: int, on_chunk=None) -> Copied:  # type: ignore[no-untyped-def]
    """Copy ``src`` to ``dest_fd`` chunk by chunk, recording each chunk's digest."""
    out = Copied()
    for chunk in read_chunks(src):
        out.digests.append(digest(chunk))
        os.write(dest_fd, chunk)
        out.size += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return out
