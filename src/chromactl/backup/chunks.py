"""Chunked copies: fixed-size chunks, a fast hash per chunk, one zstd frame per chunk.

Every file is cut into ``CHUNK`` (1 MiB) pieces. A piece's xxh3-128 digest tells
whether it changed since it was copied; a piece is compressed into its own zstd
frame, so the frames of one file compress in parallel and their concatenation is
an ordinary zstd stream (``zstd -d`` reads it).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

import xxhash
import zstandard

CHUNK = 1 << 20


def digest(data: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data)


@dataclass
class Copied:
    """What one pass wrote: sizes, hashes of content and stored bytes, chunk digests."""

    size: int = 0
    sha256: str = ""
    stored_size: int = 0
    stored_sha256: str = ""
    digests: list[bytes] = field(default_factory=list)


def read_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


class FrameCompressor:
    """Compresses chunks into independent zstd frames on a shared thread pool."""

    def __init__(self, level: int, pool: ThreadPoolExecutor, window: int) -> None:
        self._level = level
        self._pool = pool
        self._window = max(2, window)
        self._local = threading.local()

    def _compress(self, chunk: bytes) -> bytes:
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(
                level=self._level, write_checksum=True, write_content_size=True
            )
        return bytes(cctx.compress(chunk))

    def write(self, chunks: Iterator[bytes], dst: IO[bytes], on_chunk=None) -> Copied:  # type: ignore[no-untyped-def]
        """Hash and compress ``chunks`` in order into ``dst``."""
        out = Copied()
        raw, stored = hashlib.sha256(), hashlib.sha256()
        pending: deque[Future[bytes]] = deque()

        def drain_one() -> None:
            frame = pending.popleft().result()
            stored.update(frame)
            out.stored_size += len(frame)
            dst.write(frame)

        for chunk in chunks:
            out.digests.append(digest(chunk))
            raw.update(chunk)
            out.size += len(chunk)
            pending.append(self._pool.submit(self._compress, chunk))
            if on_chunk is not None:
                on_chunk(len(chunk))
            while len(pending) >= self._window:
                drain_one()
        while pending:
            drain_one()
        if out.size == 0:  # an empty file is one empty frame, as zstd writes it
            frame = self._compress(b"")
            stored.update(frame)
            out.stored_size += len(frame)
            dst.write(frame)
        out.sha256 = raw.hexdigest()
        out.stored_sha256 = stored.hexdigest()
        return out


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


def decompressed_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    """The content of a (multi-frame) zstd object, re-cut into ``CHUNK`` pieces."""
    dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    buf = bytearray()
    while data := fh.read(4 * CHUNK):
        buf += dobj.decompress(data)
        while len(buf) >= CHUNK:
            yield bytes(buf[:CHUNK])
            del buf[:CHUNK]
    if buf:
        yield bytes(buf)
