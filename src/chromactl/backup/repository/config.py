"""``config.json`` at the root of a content-addressed (format 3) repository.

Written once, by the first format-3 backup (or copy) into the target, and read by every
command: it says how the chunks of the chunk store are named, cut and compressed. A reader
refuses a repository whose ``format_version`` is greater than it knows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from chromactl.backup.repository.chunks import CHUNK
from chromactl.backup.repository.manifest import FORMAT_VERSION, ManifestError

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class RepoConfig:
    format_version: int = FORMAT_VERSION
    #: Chunks are named by this hash of their uncompressed content.
    chunk_hash: str = "sha256"
    #: Bytes of content per chunk (the last chunk of a file may be shorter).
    chunk_size: int = CHUNK
    #: Each chunk is one frame of this compression.
    compression: str = "zstd"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> RepoConfig:
        try:
            raw: Any = json.loads(data)
            version = raw["format_version"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ManifestError(f"{where}/{CONFIG_NAME} is not a repository config: {exc}") from None
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ManifestError(
                f"{where} is a repository of format {version!r}, newer than this chromactl reads "
                f"({FORMAT_VERSION}); upgrade chromactl"
            )
        try:
            config = cls(**raw)
        except TypeError as exc:
            raise ManifestError(f"{where}/{CONFIG_NAME} has unknown fields: {exc}") from None
        if (config.chunk_hash, config.compression) != ("sha256", "zstd"):
            raise ManifestError(
                f"{where} stores chunks as {config.compression}/{config.chunk_hash}; this chromactl "
                "reads zstd/sha256 only"
            )
        return config
