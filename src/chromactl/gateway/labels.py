"""Bounded label values: a metric never gets more series than its cap allows.

Tenant, database and collection names come from clients. Each one used as a label value
would be a new time series in Prometheus, so every such label goes through a
:class:`LabelCap`: the first ``limit`` distinct values keep their own series, every later
one is counted under :data:`OTHER`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

#: The label value that every value over a cap is counted under.
OTHER = "__other__"
#: Label values longer than this are cut (a label is for reading, not for storing data).
MAX_VALUE_LENGTH = 128

K = TypeVar("K", bound=Hashable)


def clip(value: str) -> str:
    return value if len(value) <= MAX_VALUE_LENGTH else value[: MAX_VALUE_LENGTH - 3] + "..."


class LabelCap:
    """Admits at most ``limit`` distinct keys; later keys map to ``other``.

    A key that was admitted stays admitted for the life of the process, so a series
    never moves between its own name and ``__other__``.
    """

    def __init__(
        self,
        limit: int,
        other: tuple[str, ...] = (OTHER,),
        *,
        on_admit: Callable[[int], None] | None = None,
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self.other = other
        #: Called with the number of admitted keys each time one is admitted.
        self._on_admit = on_admit
        self._admitted: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: tuple[str, ...]) -> tuple[str, ...]:
        found = self._admitted.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._admitted.get(key)
            if found is not None:
                return found
            if len(self._admitted) >= self.limit:
                return self.other
            found = tuple(clip(v) for v in key)
            self._admitted[key] = found
            if self._on_admit is not None:
                self._on_admit(len(self._admitted))
            return found

    def __len__(self) -> int:
        return len(self._admitted)


def top_n(values: Mapping[K, float], limit: int) -> tuple[list[K], list[K]]:
    """Split keys into the ``limit`` largest (by value, ties by key order) and the rest."""
    ordered = sorted(values, key=lambda k: (-values[k], str(k)))
    return ordered[:limit], ordered[limit:]
