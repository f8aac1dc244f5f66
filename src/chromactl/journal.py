"""The journal: every change Chroma acknowledged through the gateway, in order.

Continuous backup (``backup.continuous``) ships it beside the snapshots; a restore to a point
in time replays it onto the newest snapshot before that point. Chroma's own write log
(``embeddings_queue``) cannot serve: Chroma purges it inside the very write that makes a
collection's vector index persist (every ``sync_threshold`` records), before anyone else can
read it. The gateway sees every write, so each gateway process appends what it forwarded and
Chroma acknowledged to its own spool file, inside the write gate (a snapshot's hold falls
between two entries, never inside one), and the backup service ships the spool files.

An entry is one JSON header line, then ``size`` bytes of the request body as the client sent
it (JSON), so the write path does not parse or re-encode embeddings:

``{"t": 1767225600.123456, "origin": "w0", "n": 17, "kind": "records", "op": "add",
"collection": "<id>", "ids": null, "size": 1234}\\n<body>``

- ``t``: Unix time once Chroma answered, taken under the collection's journal lock, so the
  entries of one collection are in the order Chroma applied them, across gateway processes.
- ``kind``: ``records`` (``op`` ``add``/``update``/``upsert``/``delete``; for a delete by
  filter, ``ids`` holds the ids the filter matched just before it), ``catalog`` (``catalog``
  holds the rows of tenants, databases and the collections a request created, changed or
  deleted, as read from Chroma's database right after it answered), or ``break`` (a write
  whose outcome is unknown, ``reason`` says why: what Chroma holds cannot be replayed past it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["records", "catalog", "break"]
#: Spool files in the journal directory: ``<origin>-<number>.journal``; a process starts its
#: next file once one holds :data:`ROTATE_BYTES`, and the reader removes a file it has read
#: whole once a newer one of the same origin exists.
SPOOL_SUFFIX = ".journal"
ROTATE_BYTES = 64 << 20
#: Record operations and their number in Chroma's write log (``embeddings_queue.operation``).
RECORD_OPS = {"add": 0, "update": 1, "upsert": 2, "delete": 3}


@dataclass
class Entry:
    t: float
    origin: str
    n: int
    kind: Kind
    op: str = ""
    collection: str = ""
    ids: list[str] | None = None
    body: bytes = b""
    #: ``catalog`` entries: table name -> rows (each a column -> value mapping), and
    #: ``collections``: collection id -> its rows by table, or None once deleted.
    catalog: dict[str, Any] | None = None
    reason: str = ""
    #: Ordering key across spool files.
    key: tuple[float, str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.t, self.origin, self.n)

    def encode(self) -> bytes:
        header: dict[str, Any] = {"t": self.t, "origin": self.origin, "n": self.n, "kind": self.kind}
        if self.op:
            header["op"] = self.op
        if self.collection:
            header["collection"] = self.collection
        if self.ids is not None:
            header["ids"] = self.ids
        if self.catalog is not None:
            header["catalog"] = self.catalog
        if self.reason:
            header["reason"] = self.reason
        header["size"] = len(self.body)
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.body

    def json_body(self) -> dict[str, Any]:
        data = json.loads(self.body) if self.body else {}
        if not isinstance(data, dict):
            raise ValueError("a write body is a JSON object")
        return data


class JournalFormatError(ValueError):
    """Bytes that are not journal entries."""


def decode_entry(data: bytes, pos: int = 0) -> tuple[Entry, int] | None:
    """The entry at ``pos`` and the position after it; None while it is not whole yet."""
    end = data.find(b"\n", pos)
    if end < 0:
        return None
    try:
        header = json.loads(data[pos:end])
        size = int(header.pop("size"))
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalFormatError(f"bad journal header at byte {pos}: {exc}") from None
    if end + 1 + size > len(data):
        return None
    try:
        entry = Entry(body=data[end + 1 : end + 1 + size], **header)
    except TypeError as exc:
        raise JournalFormatError(f"bad journal header at byte {pos}: {exc}") from None
    return entry, end + 1 + size


def decode(data: bytes | memoryview) -> tuple[list[Entry], int]:
    """The complete entries at the start of ``data`` and how many bytes they take (a trailing
    partial entry, still being appended, is left for later)."""
    out: list[Entry] = []
    pos = 0
    view = bytes(data)
    while (found := decode_entry(view, pos)) is not None:
        entry, pos = found
        out.append(entry)
    return out, pos


class Spool:
    """One gateway process's spool file: entries appended with one ``write`` each."""

    def __init__(self, directory: Path, origin: str, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        if "-" in origin or "/" in origin:
            raise ValueError(f"a journal origin has no '-' or '/': {origin!r}")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.origin = origin
        self.rotate_bytes = rotate_bytes
        existing = [
            p.name[len(origin) + 1 : -len(SPOOL_SUFFIX)] for p in directory.glob(f"{origin}-*{SPOOL_SUFFIX}")
        ]
        self._file = max((int(n) for n in existing if n.isdigit()), default=0)
        self._written = 0
        self._fd = self._open_next()
        self._n = 0

    def _open_next(self) -> int:
        self._file += 1
        self._written = 0
        self.path = self.directory / f"{self.origin}-{self._file:08d}{SPOOL_SUFFIX}"
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)

    def append(self, t: float, kind: Kind, **fields: Any) -> Entry:
        self._n += 1
        entry = Entry(t=t, origin=self.origin, n=self._n, kind=kind, **fields)
        data = entry.encode()
        if self._written and self._written + len(data) > self.rotate_bytes:
            os.close(self._fd)
            self._fd = self._open_next()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._written += len(data)
        return entry

    def close(self) -> None:
        os.close(self._fd)


class SpoolReader:
    """Follows every spool file of a journal directory from where it last stopped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}

    def files(self) -> list[Path]:
        """Spool files, each origin's in the order they were written."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SPOOL_SUFFIX}"))

    def poll(self) -> list[Entry]:
        """Entries appended since the last poll, in journal order. A file read whole is
        removed once its writer has moved on to a newer one."""
        found: list[Entry] = []
        files = self.files()
        for i, path in enumerate(files):
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            entries, used = decode(data)
            self._offsets[path] = offset + used
            found.extend(entries)
            origin = path.name.split("-", 1)[0]
            newer = any(p.name.split("-", 1)[0] == origin for p in files[i + 1 :])
            if newer and used == len(data):
                path.unlink()
                del self._offsets[path]
        found.sort(key=lambda e: e.key)
        return found
