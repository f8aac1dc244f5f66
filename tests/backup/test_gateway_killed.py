"""The gateway is killed while a snapshot holds writes: the snapshot fails and leaves
nothing restorable, a restarted gateway holds nothing (writes go through), and the
next snapshot succeeds. A hold whose backup died ends by itself (its timeout)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from chromactl.backup import GatewayHold, HoldError, Repository, create_snapshot, restore
from chromactl.backup.snapshot.create import SnapshotError

from .helpers import ADMIN, DB, add, free_port, gateway_process, run_chroma, seed

pytestmark = pytest.mark.slow


class KillGatewayInsideHold:
    """The gateway's hold, and the gateway killed (SIGKILL) as soon as it is granted."""

    def __init__(self, inner: GatewayHold, proc: subprocess.Popen[bytes]) -> None:
        self.inner = inner
        self.proc = proc
        self.waited_s = 0.0

    def __enter__(self) -> KillGatewayInsideHold:
        self.inner.__enter__()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


def test_gateway_killed_during_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    gw = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    repo = Repository(str(tmp_path / "repo"))
    with run_chroma(data) as chroma:
        ids = seed(chroma.url, {"kept": 600})
        with gateway_process(tmp_path, chroma.url, port) as proc:
            hold = KillGatewayInsideHold(GatewayHold(gw, ADMIN, timeout_s=30), proc)
            with pytest.raises((HoldError, SnapshotError), match="cannot release the write hold"):
                create_snapshot(data, repo, hold, chroma_version="1.5.9")
        assert repo.snapshots() == []  # nothing complete, nothing partial left
        assert not list((tmp_path / "repo").rglob("manifest.json"))

        with gateway_process(tmp_path, chroma.url, port):
            held = httpx.get(f"{gw}/chromactl/v1/hold", headers=auth, timeout=10).json()
            assert held["holds"] == []
            start = time.monotonic()
            with httpx.Client(headers=auth, timeout=10) as client:  # would wait 30 s if held
                add(gw, ids["kept"], ["after-kill-0"], client)
            assert time.monotonic() - start < 5

            result = create_snapshot(data, repo, GatewayHold(gw, ADMIN), chroma_version="1.5.9")
            assert result.outcome == "success"
            assert [s.snapshot_id for s in repo.complete()] == [result.snapshot_id]
            assert {c.name: c.count for c in repo.resolve().collections} == {"kept": 601}

            # a backup that dies holding writes: the hold ends by itself after its timeout
            resp = httpx.post(f"{gw}/chromactl/v1/hold", headers=auth, json={"timeout_s": 1.0}, timeout=10)
            assert resp.status_code == 200
            with httpx.Client(headers=auth, timeout=30) as client:
                start = time.monotonic()
                add(gw, ids["kept"], ["after-expiry-0"], client)
                waited = time.monotonic() - start
            assert 0.5 < waited < 10
            count = httpx.get(f"{chroma.url}{DB}/collections/{ids['kept']}/count").text
            assert int(count) == 602
    restore(repo, tmp_path / "restored")
    assert (tmp_path / "restored" / "chroma.sqlite3").exists()
