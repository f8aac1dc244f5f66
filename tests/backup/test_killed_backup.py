"""A backup killed mid-upload leaves nothing restorable; the next one succeeds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chromactl.backup import Repository, restore
from chromactl.backup.operations.prune import prune
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.repository.lease import LEASE_TTL_S
from chromactl.config import RetentionSettings

from .conftest import s3_repo

pytestmark = pytest.mark.slow
CHROMACTL = [sys.executable, "-m", "chromactl"]


def big_data_dir(seeded_dir: Path, dest: Path) -> Path:
    shutil.copytree(seeded_dir, dest)
    seg = next(p for p in dest.iterdir() if p.is_dir())
    with open(seg / "zz-padding.bin", "wb") as fh:  # incompressible, uploaded last
        for _ in range(48):
            fh.write(os.urandom(4 << 20))
    return dest


def kill_mid_upload(args: list[str], started: callable, env: dict[str, str]) -> None:  # type: ignore[valid-type]
    proc = subprocess.Popen(
        [*CHROMACTL, *args, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while not started():
            assert proc.poll() is None, "the backup finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def check_after_kill(
    repo: Repository, args: list[str], env: dict[str, str], tmp_path: Path, common: list[str]
) -> None:
    assert repo.complete() == []
    assert len(repo.snapshots()) == 1  # the incomplete one is there, not restorable
    listed = subprocess.run(
        [*CHROMACTL, "backup", "list", "--repo", repo.url, "--json", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(listed.stdout)["snapshots"] == []
    failed = subprocess.run(
        [*CHROMACTL, "restore", "--repo", repo.url, "--data-dir", str(tmp_path / "r1"), *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode != 0
    assert "no complete snapshot" in failed.stderr
    assert not (tmp_path / "r1").exists()

    done = subprocess.run([*CHROMACTL, *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "success"
    assert [s.snapshot_id for s in repo.complete()] == [result["snapshot_id"]]
    assert restore(repo, tmp_path / "r2").snapshot_id == result["snapshot_id"]
    # the killed backup's lease is still fresh: its snapshot looks like a running backup's, and
    # its shared lock keeps prune from deleting chunks
    kept = prune(repo, RetentionSettings(incomplete_grace_s=0), lock_wait_s=0.5)
    assert kept.removed_incomplete == [] and kept.removed_chunks == 0
    assert kept.chunks_skipped is not None and "shared lock" in kept.chunks_skipped
    # once lease and lock have gone stale (no writer refreshes them) the grace applies; the
    # chunks the killed backup uploaded are the next backup's (same data): none is removed
    pruned = prune(repo, RetentionSettings(incomplete_grace_s=0), now=time.time() + LEASE_TTL_S + 1)
    assert len(pruned.removed_incomplete) == 1
    assert len(pruned.removed_locks) == 1 and pruned.chunks_skipped is None
    assert pruned.removed_chunks == 0
    assert [s.snapshot_id for s in repo.snapshots()] == [result["snapshot_id"]]
    assert restore(repo, tmp_path / "r3").snapshot_id == result["snapshot_id"]


def test_killed_local(seeded_dir: Path, tmp_path: Path) -> None:
    data = big_data_dir(seeded_dir, tmp_path / "data")
    repo = Repository(str(tmp_path / "repo"))
    args = ["backup", "create", "--offline", "--data-dir", str(data), "--repo", repo.url]

    def started() -> bool:  # some of the padding's 192 chunks are uploaded
        return len(list((tmp_path / "repo" / "chunks").glob("*/*"))) > 30

    env = dict(os.environ)
    kill_mid_upload(args, started, env)
    check_after_kill(repo, args, env, tmp_path, [])


def test_killed_s3(seeded_dir: Path, tmp_path: Path, s3_repo_url: str, s3_endpoint: str) -> None:
    data = big_data_dir(seeded_dir, tmp_path / "data")
    repo = s3_repo(s3_repo_url, s3_endpoint)
    config = tmp_path / "chromactl.yaml"
    config.write_text(f"backup:\n  target: {s3_repo_url}\n  endpoint_url: {s3_endpoint}\n")
    args = ["backup", "create", "--offline", "--data-dir", str(data), "--config", str(config)]

    def started() -> bool:  # some chunks are uploaded (under the backup's lock)
        return len(ChunkStore(repo).listing()) > 10

    env = dict(os.environ)
    kill_mid_upload(args, started, env)
    check_after_kill(repo, args, env, tmp_path, ["--config", str(config)])
