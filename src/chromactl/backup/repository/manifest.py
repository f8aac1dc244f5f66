"""The snapshot manifest: written last, it is what makes a snapshot complete."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from chromactl.errors import ChromactlError

#: Bumped when a reader of the previous format could misread a snapshot.
#: 1: one zstd frame per file. 2: one zstd frame per ``chunk_size`` bytes of a file
#: (a reader of format 1 would stop after the first frame). 3: content-addressed: each file is
#: a list of chunks stored once in the repository's chunk store (see :mod:`.chunkstore`).
FORMAT_VERSION = 3
#: The first format whose files are lists of chunks of the repository's chunk store.
CHUNKED_FORMAT = 3
MANIFEST_NAME = "manifest.json"
#: Where a file's object lives inside a snapshot: ``files/<path>.zst``.
OBJECT_PREFIX = "files/"
OBJECT_SUFFIX = ".zst"


class ManifestError(ChromactlError):
    """A manifest is missing, unreadable, or from an unknown format."""


@dataclass(frozen=True)
class FileEntry:
    """One file of the data directory, as stored in the snapshot.

    Format 3: ``chunks`` are the SHA-256 of each ``chunk_size`` piece of the file in order,
    ``chunk_sizes`` the bytes each one's object takes in the target, ``stored_size`` their sum
    and ``stored_sha256`` empty. Formats 1 and 2: one object per file (``stored_*`` are its
    length and hash) and no ``chunks``."""

    path: str
    size: int
    sha256: str
    stored_size: int
    stored_sha256: str = ""
    mode: int = 0o644
    chunks: list[str] | None = None
    chunk_sizes: list[int] | None = None
    #: Format 3: the xxh3-128 digest (hex) of each chunk, for the next backup (see
    #: :class:`~.chunkstore.ChunkUploader`).
    chunk_xxh3: list[str] | None = None

    @property
    def object_name(self) -> str:
        return object_name(self.path)

    @property
    def chunked(self) -> bool:
        return self.chunks is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.chunks is None:  # formats 1 and 2 keep their fields as they were
            del data["chunks"], data["chunk_sizes"], data["chunk_xxh3"]
        return data


@dataclass(frozen=True)
class CollectionCount:
    id: str
    name: str
    tenant: str
    database: str
    count: int


@dataclass
class Manifest:
    snapshot_id: str
    created_at: str
    chroma_version: str
    chromactl_version: str
    consistency: str
    files: list[FileEntry] = field(default_factory=list)
    collections: list[CollectionCount] = field(default_factory=list)
    hold_s: float = 0.0
    #: Bytes of content per zstd frame (0: the whole file is one frame, format 1).
    chunk_size: int = 0
    format_version: int = FORMAT_VERSION
    compression: str = "zstd"
    hash: str = "sha256"
    #: Unix time of the cut (inside the write hold): the journal of continuous backup is
    #: replayed onto this snapshot from here. None in snapshots taken before it was recorded.
    cut_at: float | None = None

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def stored_size(self) -> int:
        return sum(f.stored_size for f in self.files)

    @property
    def record_count(self) -> int:
        return sum(c.count for c in self.collections)

    @property
    def chunked(self) -> bool:
        """Whether the files are chunks of the repository's chunk store (format 3)."""
        return self.format_version >= CHUNKED_FORMAT

    def chunk_hashes(self) -> set[str]:
        """Every chunk the snapshot needs (format 3; none for formats 1 and 2)."""
        return {h for f in self.files for h in f.chunks or ()}

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = [f.to_dict() for f in self.files]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ManifestError(
                f"snapshot format {version!r} is newer than this chromactl reads "
                f"({FORMAT_VERSION}); upgrade chromactl"
            )
        try:
            files = [FileEntry(**f) for f in data.pop("files")]
            collections = [CollectionCount(**c) for c in data.pop("collections")]
            manifest = cls(files=files, collections=collections, **data)
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest is missing or has unknown fields: {exc}") from None
        for entry in files:
            n = len(entry.chunks or ())
            fits = len(entry.chunk_sizes or ()) == n and len(entry.chunk_xxh3 or ()) in (0, n)
            if manifest.chunked != entry.chunked or not fits:
                raise ManifestError(
                    f"manifest of {manifest.snapshot_id} (format {version}) describes {entry.path} "
                    "with chunks that do not fit its format: it is damaged"
                )
        return manifest


def object_name(path: str) -> str:
    return f"{OBJECT_PREFIX}{path}{OBJECT_SUFFIX}"


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.5.9"`` → ``(1, 5, 9)``; trailing non-numeric parts are ignored."""
    parts: list[int] = []
    for piece in text.strip().lstrip("v").split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
