"""What a pod remembers of its place in the cluster across restarts (``<state_dir>/state.json``).

- ``history``: the terms of the replication log, oldest first, each ``[term, first index]``: a
  new primary starts a term at the index after the last it holds (as Raft's log matching):
  two pods agree up to index ``i`` when both say the same term for ``i``.
- ``applied``: the last index whose write this pod's Chroma holds.
- ``base``: the index the log starts after (a rebuild starts the log at its base copy's index).
- ``role`` and ``clean``: a pod that was the primary and stopped without handing over
  (``clean`` false) may hold writes no standby received.
- ``rebuild``: set by a standby that can no longer follow by replay; its init container
  rebuilds its data from the primary.
- ``origin``: ``empty`` when the first primary started from an empty Chroma (a standby that
  starts empty can then follow from index 1); otherwise the data came from before high
  availability, and a standby needs a base copy.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from chromactl.errors import ChromactlError

Role = Literal["primary", "standby"]
STATE_NAME = "state.json"


class StateError(ChromactlError):
    """The state file cannot be read."""


def new_term() -> str:
    return secrets.token_hex(6)


@dataclass
class NodeState:
    history: list[tuple[str, int]] = field(default_factory=list)
    applied: int = 0
    base: int = 0
    role: Role = "standby"
    clean: bool = True
    origin: Literal["empty", "data", ""] = ""
    #: This pod cannot follow by replay: its init container rebuilds it from the primary.
    rebuild: bool = False

    def term_at(self, index: int) -> str:
        """The term of ``index`` ("" for index 0 or before the first term)."""
        term = ""
        for t, first in self.history:
            if first > index:
                break
            term = t
        return term if index > 0 else ""

    def start_term(self, first: int) -> str:
        """Begin a new term at ``first`` (this pod becomes the primary)."""
        term = new_term()
        self.history.append((term, first))
        return term

    @property
    def term(self) -> str:
        return self.history[-1][0] if self.history else ""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["history"] = [list(h) for h in self.history]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NodeState:
        raw = data.get("history") or []
        assert isinstance(raw, list)
        return cls(
            history=[(str(t), int(f)) for t, f in raw],
            applied=int(data.get("applied", 0)),  # type: ignore[call-overload]
            base=int(data.get("base", 0)),  # type: ignore[call-overload]
            role="primary" if data.get("role") == "primary" else "standby",
            clean=bool(data.get("clean", True)),
            origin=data.get("origin", "") or "",  # type: ignore[arg-type]
            rebuild=bool(data.get("rebuild", False)),
        )


class StateFile:
    """``state.json`` in ``directory``, replaced atomically on every save."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / STATE_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> NodeState:
        if not self.path.exists():
            return NodeState()
        try:
            return NodeState.from_dict(json.loads(self.path.read_text()))
        except (ValueError, TypeError, AssertionError) as exc:
            raise StateError(
                f"{self.path} is not a high-availability state file ({exc}); move it away and "
                "the pod rebuilds its data from the primary"
            ) from None

    def save(self, state: NodeState) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(state.to_dict(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
