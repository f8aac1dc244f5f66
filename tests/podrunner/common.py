"""What the pod runner's modules share: the error, the host tools, process helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
BASH = shutil.which("bash") or "/bin/bash"
CC = shutil.which("cc") or "/usr/bin/cc"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
RUN_DIR = Path("/run/podrunner")
LOG_TAIL_LINES = 30
TICK_S = 0.1


class PodError(RuntimeError):
    """A pod did not do what was asked; the message names pod and container."""


# --------------------------------------------------------------------------- helpers


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in tail) if tail else "    | (empty log)"


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=stdin)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def _main_process(pid: int) -> int | None:
    """The first process under a bubblewrap sandbox that is not bubblewrap itself."""
    queue = [pid]
    while queue:
        current = queue.pop(0)
        try:
            comm = Path(f"/proc/{current}/comm").read_text().strip()
        except OSError:
            continue
        if current != pid and comm != "bwrap":
            return current
        queue += _children(current)
    return None
