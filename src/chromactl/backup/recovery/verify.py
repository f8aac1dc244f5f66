"""``backup verify``: re-hash a snapshot, optionally boot a throwaway Chroma on it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chromactl.backup.progress import Progress
from chromactl.backup.recovery.fetch import check_files
from chromactl.backup.repository.manifest import Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.backup.snapshot.files import check_sqlite
from chromactl.chromadata import SQLITE_NAME
from chromactl.errors import ChromactlError


@dataclass
class VerifyReport:
    snapshot_id: str
    ok: bool
    files_checked: int = 0
    bad_files: dict[str, str] = field(default_factory=dict)
    sqlite_check: str | None = None
    chroma_checked: bool = False
    count_mismatches: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_chroma_bin() -> str:
    """``chroma`` next to this Python, else on ``PATH``."""
    here = Path(sys.executable).with_name("chroma")
    return str(here) if here.exists() else (shutil.which("chroma") or "chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaDidNotStart(ChromactlError):
    """The throwaway Chroma exited or did not answer."""


@contextlib.contextmanager
def throwaway_chroma(
    data_dir: Path,
    *,
    chroma_bin: str | None = None,
    timeout_s: float = 60.0,
    config: Callable[[int], str] | None = None,
) -> Iterator[str]:
    """A Chroma on ``data_dir`` on a free loopback port, stopped on exit; yields its URL.
    ``config``: its config file's text for a port (default: persist path, port, loopback)."""
    port = _free_port()
    config_path = data_dir.parent / "chroma-verify.yaml"
    text = config(port) if config else f"persist_path: {data_dir}\nport: {port}\nlisten_address: 127.0.0.1\n"
    config_path.write_text(text, encoding="utf-8")
    log_path = data_dir.parent / "chroma-verify.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [chroma_bin or default_chroma_bin(), "run", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=30.0) as client:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-500:]
                    raise ChromaDidNotStart(f"chroma exited with {proc.returncode}: {tail}")
                try:
                    if client.get(f"{url}/api/v2/heartbeat").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ChromaDidNotStart(f"chroma did not start within {timeout_s:.0f}s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def check_with_chroma(
    data_dir: Path, manifest: Manifest, *, chroma_bin: str | None = None, timeout_s: float = 60.0
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Start Chroma on ``data_dir``; compare each collection's count with the manifest
    and read its embeddings. Returns (count mismatches, other problems)."""
    mismatches: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    try:
        with (
            throwaway_chroma(data_dir, chroma_bin=chroma_bin, timeout_s=timeout_s) as url,
            httpx.Client(timeout=30.0) as client,
        ):
            for col in manifest.collections:
                coll = f"{url}/api/v2/tenants/{col.tenant}/databases/{col.database}/collections/{col.id}"
                resp = client.get(f"{coll}/count")
                if resp.status_code != 200:
                    problems.append(f"{col.name}: count failed: HTTP {resp.status_code}")
                    continue
                got = int(resp.json())
                if got != col.count:
                    mismatches[col.name] = {"manifest": col.count, "chroma": got}
                resp = client.post(f"{coll}/get", json={"limit": 100, "include": ["embeddings"]})
                if resp.status_code != 200:
                    problems.append(f"{col.name}: get embeddings failed: HTTP {resp.status_code}")
    except ChromaDidNotStart as exc:
        return {}, [str(exc)]
    return mismatches, problems


def verify(
    repo: Repository,
    snapshot: str = "latest",
    *,
    start_chroma: bool = False,
    chroma_bin: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Re-hash every object of a snapshot (and with ``start_chroma``, restore it to a
    scratch directory, run ``PRAGMA quick_check`` and compare counts in a live Chroma)."""
    manifest = repo.resolve(snapshot)
    report = VerifyReport(manifest.snapshot_id, ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="chromactl-verify-", dir=scratch_dir))
    try:
        data_dir = scratch / "data" if start_chroma else None
        checks = check_files(repo, manifest, data_dir, progress=progress)
        report.files_checked = len(checks)
        report.bad_files = {c.path: c.problem or "" for c in checks if not c.ok}
        if report.bad_files or data_dir is None:
            report.ok = not report.bad_files
            return report
        report.sqlite_check = check_sqlite(data_dir / SQLITE_NAME)
        if report.sqlite_check != "ok":
            report.problems.append(f"sqlite quick_check: {report.sqlite_check}")
        report.count_mismatches, problems = check_with_chroma(data_dir, manifest, chroma_bin=chroma_bin)
        report.problems.extend(problems)
        report.chroma_checked = True
        report.ok = not (report.count_mismatches or report.problems)
        return report
    finally:
        if progress is not None:
            progress.close()
        shutil.rmtree(scratch, ignore_errors=True)
