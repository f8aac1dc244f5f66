"""``memory://``: fsspec's in-process store, for trying things out; gone with the process."""

from __future__ import annotations

from ..registry import Scheme, register

MEMORY = register(Scheme(names=("memory",)))
