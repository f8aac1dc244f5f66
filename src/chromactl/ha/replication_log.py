"""The replication log: every write the primary's Chroma acknowledged, numbered, as standbys get it.

The primary's journal step (:mod:`chromactl.gateway.middleware.journal`) hands each entry to
:meth:`ReplicationLog.append` inside the collection's journal lock, so the log holds one
collection's writes in the order Chroma applied them. Each record is one JSON line with its
index and term, then the journal entry as :mod:`chromactl.journal` encodes it::

    {"i": 42, "term": "3f2a9c1b0d4e"}\\n{"t": ..., "kind": "records", ..., "size": 1234}\\n<body>

A standby stores the records it receives with the same numbers (:meth:`add`), so that once
promoted it serves the others from where they are. Records live in segment files
``<first index>.rlog`` in the log directory; once more than ``retained_bytes`` are kept the
oldest segment goes, and a standby that needs it is rebuilt from a base copy instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chromactl.journal import Entry, JournalFormatError, decode_entry

SEGMENT_SUFFIX = ".rlog"
SEGMENT_BYTES = 16 << 20
#: The newest records are kept in memory too, for standbys that follow closely.
TAIL_RECORDS = 4096


@dataclass(frozen=True)
class Record:
    index: int
    term: str
    entry: Entry

    def encode(self) -> bytes:
        return json.dumps({"i": self.index, "term": self.term}).encode() + b"\n" + self.entry.encode()


@dataclass(frozen=True)
class Heartbeat:
    """On the stream only: the primary's last index, while it has no record to send."""

    last: int

    def encode(self) -> bytes:
        return json.dumps({"hb": 1, "last": self.last}).encode() + b"\n"


def decode_records(data: bytes) -> tuple[list[Record | Heartbeat], int]:
    """The whole records (and, on the stream, heartbeats) at the start of ``data`` and the
    bytes they take (one still being written or sent is left for later)."""
    out: list[Record | Heartbeat] = []
    pos = 0
    while (head_end := data.find(b"\n", pos)) >= 0:
        try:
            head = json.loads(data[pos:head_end])
        except ValueError as exc:
            raise JournalFormatError(f"bad replication record at byte {pos}: {exc}") from None
        if "hb" in head:
            out.append(Heartbeat(int(head["last"])))
            pos = head_end + 1
            continue
        found = decode_entry(data, head_end + 1)
        if found is None:
            break
        entry, after = found
        out.append(Record(int(head["i"]), str(head["term"]), entry))
        pos = after
    return out, pos


class LogGap(Exception):
    """A record that does not follow the last one (a standby missed some)."""


class ReplicationLog:
    """Segments of records in ``directory``; records ``first_index .. last_index`` are kept."""

    def __init__(self, directory: Path, *, base: int = 0, retained_bytes: int = 256 << 20) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.retained_bytes = retained_bytes
        self.first_index = base + 1
        self.last_index = base
        self.last_term = ""
        self._fd: int | None = None
        self._segment_bytes = 0
        #: The newest records with their encoding, as the stream sends them.
        self._tail: deque[tuple[Record, bytes]] = deque(maxlen=TAIL_RECORDS)
        self._waiters: list[asyncio.Future[None]] = []
        segments = self.segments()
        if segments:
            self.first_index = int(segments[0].stem)
            for record in self.read(self.first_index - 1, segments=segments[-1:]):
                self.last_index, self.last_term = record.index, record.term
            if self.last_index < self.first_index:
                self.last_index = self.first_index - 1
            self._segment_bytes = segments[-1].stat().st_size

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"), key=lambda p: int(p.stem))

    def reset(self, base: int) -> None:
        """Drop every record: the log starts after ``base`` (a rebuilt pod's base copy)."""
        self.close()
        for segment in self.segments():
            segment.unlink()
        self.first_index, self.last_index, self.last_term = base + 1, base, ""
        self._tail.clear()

    # -- writing -----------------------------------------------------------------------

    def append(self, entry: Entry, term: str) -> int:
        """The primary: number ``entry`` and store it; its index."""
        record = Record(self.last_index + 1, term, entry)
        self._write(record)
        return record.index

    def add(self, record: Record) -> None:
        """A standby: store a record the primary numbered."""
        if record.index != self.last_index + 1:
            raise LogGap(f"record {record.index} does not follow {self.last_index}")
        self._write(record)

    def _write(self, record: Record) -> None:
        data = record.encode()
        if self._fd is None or self._segment_bytes + len(data) > SEGMENT_BYTES:
            self._roll(record.index)
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._segment_bytes += len(data)
        self._tail.append((record, data))
        self.last_index, self.last_term = record.index, record.term
        self._notify()

    def _roll(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        path = self.directory / f"{first:016d}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._segment_bytes = os.fstat(self._fd).st_size
        self._trim()

    def _trim(self) -> None:
        segments = self.segments()
        total = sum(p.stat().st_size for p in segments)
        while len(segments) > 1 and total > self.retained_bytes:
            oldest = segments.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
            self.first_index = int(segments[0].stem)

    def _notify(self) -> None:
        """Wake the streams waiting for a record (all on the event loop that appends)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_beyond(self, index: int, timeout_s: float) -> bool:
        """Wait until a record past ``index`` exists (at most ``timeout_s``)."""
        if self.last_index > index:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout_s)
        return self.last_index > index

    # -- reading -----------------------------------------------------------------------

    def read(self, after: int, *, segments: list[Path] | None = None, limit: int = 0) -> Iterator[Record]:
        """Records past ``after``, in order (at most ``limit`` when given)."""
        if segments is None and self._tail and self._tail[0][0].index <= after + 1:
            yield from (r for r, _ in self._newest(after, limit))
            return
        found = 0
        chosen = segments if segments is not None else self.segments()
        for i, segment in enumerate(chosen):
            following = chosen[i + 1] if i + 1 < len(chosen) else None
            if following is not None and int(following.stem) <= after + 1:
                continue
            stored, _ = decode_records(segment.read_bytes())
            for record in stored:
                if isinstance(record, Record) and record.index > after:
                    yield record
                    found += 1
                    if limit and found >= limit:
                        return

    def _newest(self, after: int, limit: int) -> list[tuple[Record, bytes]]:
        """The tail's records past ``after`` (at most ``limit``), counted from its newest end:
        the tail's indexes follow each other, so a standby close behind costs what it lacks."""
        newer = list(itertools.islice(reversed(self._tail), max(0, self.last_index - after)))
        newer.reverse()
        return newer[:limit] if limit else newer

    def read_encoded(self, after: int, limit: int) -> tuple[int, bytes]:
        """Up to ``limit`` records past ``after`` as the stream sends them, and the last index
        among them (``after`` when there is none)."""
        if self._tail and self._tail[0][0].index <= after + 1:
            found = [(r.index, data) for r, data in self._newest(after, limit)]
        else:
            found = [(r.index, r.encode()) for r in self.read(after, limit=limit)]
        if not found:
            return after, b""
        return found[-1][0], b"".join(data for _, data in found)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
