"""The schemes chromactl stores objects with: importing this package registers each."""

from . import az, file, gs, memory, s3

__all__ = ["az", "file", "gs", "memory", "s3"]
