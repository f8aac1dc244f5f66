"""Progress reporting: the library calls a :class:`Progress`; the CLI draws rich bars."""

from __future__ import annotations

import threading
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import (
    Progress as RichProgress,
)


class Progress(Protocol):
    def phase(self, description: str, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def phase(self, description: str, total_bytes: int) -> None:
        return None

    def advance(self, nbytes: int) -> None:
        return None

    def close(self) -> None:
        return None


class RichBars:
    """One bar per phase with bytes, rate and ETA, on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self._bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None
        self._lock = threading.Lock()
        self._bars.start()

    def phase(self, description: str, total_bytes: int) -> None:
        with self._lock:
            if self._task is not None:
                self._bars.update(self._task, completed=self._bars.tasks[-1].total)
            self._task = self._bars.add_task(description, total=max(total_bytes, 1))

    def advance(self, nbytes: int) -> None:
        with self._lock:
            if self._task is not None:
                self._bars.advance(self._task, nbytes)

    def close(self) -> None:
        self._bars.stop()
