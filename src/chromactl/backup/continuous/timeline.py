"""The shipped journal in the repository: epochs of numbered segments beside the snapshots.

Layout under the target URL (``docs/backup-format.md``)::

    journal/<epoch-id>/00000001.zst   segment 1: journal entries, in journal order
    journal/<epoch-id>/00000002.zst
    journal/<epoch-id>/head.json      written after each segment, and every HEARTBEAT_S

An epoch is one unbroken run of the shipper: it starts when the pod starts, and again after
a break (a write whose outcome is unknown). A segment is a zstd frame of one JSON header
line (epoch, number, entry count, first and last entry time, sha256 of what follows) and the
entries as the gateway wrote them (:mod:`chromactl.journal`). ``head.json`` says how far the
epoch is shipped (``through``: every entry up to that time is in a segment) and, once it
ended, why. Segments are written before the head that counts them, so a head never counts
a segment that is not there; a segment the head does not count yet is read all the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import zstandard

from chromactl.backup.repository.repository import Repository, new_snapshot_id
from chromactl.errors import ChromactlError
from chromactl.journal import Entry, decode

PREFIX = "journal"
HEAD_NAME = "head.json"
SEGMENT_SUFFIX = ".zst"


class TimelineError(ChromactlError):
    """The shipped journal is missing a piece or does not match its hashes."""


@dataclass
class Head:
    epoch: str
    started: float
    #: Every entry up to this time is in a segment.
    through: float
    segments: int = 0
    #: When and why the epoch ended (a break), or None while it runs.
    ended: float | None = None
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Head:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError) as exc:
            raise TimelineError(f"journal head is unreadable: {exc}") from None

    @property
    def end(self) -> float:
        """The last time this epoch can restore to."""
        return self.through if self.ended is None else min(self.through, self.ended)


def new_epoch_id() -> str:
    return new_snapshot_id()


def segment_name(number: int) -> str:
    return f"{number:08d}{SEGMENT_SUFFIX}"


#: zstd level of segments: the fastest, as a segment is written every ``ship_interval_s``.
SEGMENT_LEVEL = 1


def encode_segment(epoch: str, number: int, entries: list[Entry], level: int = SEGMENT_LEVEL) -> bytes:
    body = b"".join(e.encode() for e in entries)
    header = {
        "epoch": epoch,
        "segment": number,
        "entries": len(entries),
        "first_t": entries[0].t,
        "last_t": entries[-1].t,
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    raw = json.dumps(header, sort_keys=True).encode() + b"\n" + body
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(raw)


def decode_segment(data: bytes, where: str) -> tuple[dict[str, object], list[Entry]]:
    try:
        raw = zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise TimelineError(f"{where} is damaged: {exc}") from None
    end = raw.find(b"\n")
    try:
        header = json.loads(raw[:end])
    except ValueError:
        raise TimelineError(f"{where} has no readable header") from None
    body = raw[end + 1 :]
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise TimelineError(f"{where} does not match its sha256: it is damaged")
    entries, used = decode(body)
    if used != len(body) or len(entries) != header.get("entries"):
        raise TimelineError(
            f"{where} holds {len(entries)} whole entries, its header says {header.get('entries')}"
        )
    return header, entries


class Timeline:
    """Reads and writes the journal of one repository."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def _key(self, *parts: str) -> str:
        return "/".join([PREFIX, *parts])

    # -- writing (the shipper) -------------------------------------------------------------
    def write_segment(self, epoch: str, number: int, entries: list[Entry]) -> int:
        data = encode_segment(epoch, number, entries)
        self.repo.save(
            self._key(epoch, segment_name(number)), data, what=f"ship journal segment {epoch}/{number}"
        )
        return len(data)

    def write_head(self, head: Head) -> None:
        self.repo.save(
            self._key(head.epoch, HEAD_NAME), head.to_json(), what=f"write journal head {head.epoch}"
        )

    # -- reading (restore, prune) ----------------------------------------------------------
    def epochs(self) -> list[Head]:
        """Every epoch with a head, oldest first."""
        heads = []
        for name in self.repo.store.list(self._key(), what="list the journal"):
            data = self.repo.load(self._key(name, HEAD_NAME), what=f"read journal head {name}")
            if data is not None:
                heads.append(Head.from_json(data))
        return heads

    def segment_numbers(self, epoch: str) -> list[int]:
        names = self.repo.store.list(self._key(epoch), what=f"list journal {epoch}")
        return sorted(
            int(n[: -len(SEGMENT_SUFFIX)]) for n in names if n.endswith(SEGMENT_SUFFIX) and n[:-4].isdigit()
        )

    def read(self, head: Head, after: float, until: float) -> list[Entry]:
        """The entries of an epoch with ``after < t <= until``, in journal order. Every
        segment from the first must be there and match its hash."""
        numbers = self.segment_numbers(head.epoch)
        expected = list(range(1, len(numbers) + 1))
        if numbers != expected or len(numbers) < head.segments:
            missing = sorted(set(range(1, max(head.segments, len(numbers)) + 1)) - set(numbers))
            raise TimelineError(f"journal epoch {head.epoch} is missing segment(s) {missing[:10]}")
        out: list[Entry] = []
        for number in numbers:
            where = f"journal segment {head.epoch}/{segment_name(number)}"
            data = self.repo.load(self._key(head.epoch, segment_name(number)), what=f"read {where}")
            if data is None:
                raise TimelineError(f"{where} disappeared while it was read")
            header, entries = decode_segment(data, where)
            out.extend(e for e in entries if after < e.t <= until)
            first_t = header.get("first_t")
            if isinstance(first_t, int | float) and first_t > until + 60:
                break  # later segments hold only later entries
        out.sort(key=lambda e: e.key)
        return out

    def delete_epoch(self, epoch: str) -> None:
        """The head first, so that a half-deleted epoch is never read as whole."""
        what = f"delete journal epoch {epoch}"
        self.repo.store.remove([self._key(epoch, HEAD_NAME)], what=what)
        self.repo.store.remove_tree(self._key(epoch), what=what)
