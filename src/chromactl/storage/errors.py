"""What the storage layer raises."""

from __future__ import annotations

from chromactl.errors import ChromactlError


class StoreError(ChromactlError):
    """The store cannot be opened or reached, or an operation on it failed for good."""


class ObjectMissing(StoreError, FileNotFoundError):
    """No object under that key."""
