"""``/path`` or ``file:///path``: a directory of this machine (a mounted volume)."""

from __future__ import annotations

from ..registry import Scheme, register

FILE = register(Scheme(names=("file", "local"), local=True))
