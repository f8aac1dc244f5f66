"""Retention: last N plus daily/weekly/monthly windows; incomplete leftovers cleaned up."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl.backup import Manifest, Repository
from chromactl.backup.operations.prune import prune
from chromactl.backup.progress import NullProgress
from chromactl.backup.repository.lease import LEASE_NAME, LEASE_TTL_S, Lease, LeaseKeeper
from chromactl.backup.snapshot import create as snapshot_mod
from chromactl.backup.snapshot.create import create_snapshot
from chromactl.backup.snapshot.hold import NoHold
from chromactl.cli import app
from chromactl.config import RetentionSettings

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def sid(t: datetime, n: int = 0) -> str:
    return f"{t.strftime('%Y%m%dT%H%M%SZ')}-{n:06x}"


def fake(repo: Repository, snapshot_id: str, *, complete: bool = True) -> None:
    root = Path(repo.url) / snapshot_id
    (root / "files").mkdir(parents=True)
    (root / "files" / "chroma.sqlite3.zst").write_bytes(b"x")
    if complete:
        repo.write_manifest(Manifest(snapshot_id, "t", "1.5.9", "0.1.0", "offline"))


def policy(**kw: float) -> RetentionSettings:
    base = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "incomplete_grace_s": 3600}
    return RetentionSettings(**{**base, **kw})


def test_windows(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    # two snapshots a day for 70 days, newest first in time = NOW
    ids = [sid(NOW - timedelta(hours=12 * k), k) for k in range(140)]
    for s in ids:
        fake(repo, s)
    result = prune(repo, policy(keep_last=3, keep_daily=5, keep_weekly=3, keep_monthly=3))
    kept = set(result.kept)
    newest_first = sorted(ids, reverse=True)
    assert set(newest_first[:3]) <= kept
    # daily: newest of each of the 5 newest days
    days: dict[str, str] = {}
    for s in newest_first:
        days.setdefault(s[:8], s)
    assert set(list(days.values())[:5]) <= kept
    months: dict[str, str] = {}
    for s in newest_first:
        months.setdefault(s[:6], s)
    assert set(list(months.values())[:3]) <= kept
    assert len(kept) < 3 + 5 + 3 + 3 + 1
    remaining = {s.snapshot_id for s in repo.snapshots()}
    assert remaining == kept
    assert set(result.removed) == set(ids) - kept


def test_newest_complete_is_never_removed(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    old = sid(NOW - timedelta(days=400))
    newest = sid(NOW - timedelta(days=3))
    fake(repo, old)
    fake(repo, newest)
    fake(repo, sid(NOW - timedelta(days=1)), complete=False)  # newer but incomplete
    result = prune(repo, policy(incomplete_grace_s=0))
    assert list(result.kept) == [newest]
    assert [s.snapshot_id for s in repo.snapshots()] == [newest]


def test_incomplete_removed_only_after_grace(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    now = datetime.now(UTC)
    fake(repo, sid(now - timedelta(hours=5)))
    stale = sid(now - timedelta(hours=3), 1)
    fresh = sid(now - timedelta(minutes=1), 2)  # maybe still uploading
    fake(repo, stale, complete=False)
    fake(repo, fresh, complete=False)
    result = prune(repo, policy(keep_last=5, incomplete_grace_s=3600))
    assert result.removed_incomplete == [stale]
    assert fresh in repo.snapshot_ids()
    assert stale not in repo.snapshot_ids()


def test_dry_run_and_cli(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    ids = [sid(NOW - timedelta(days=k), k) for k in range(6)]
    for s in ids:
        fake(repo, s)
    prune = ["backup", "prune", "--repo", str(tmp_path), "--keep-last", "2", "--keep-daily", "0"]
    prune += ["--keep-weekly", "0", "--keep-monthly", "0", "--json"]
    out = CliRunner().invoke(app, [*prune, "--dry-run"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert sorted(data["removed"]) == sorted(ids)[:4]
    assert len(repo.snapshot_ids()) == 6  # dry run
    out = CliRunner().invoke(app, prune)
    assert out.exit_code == 0
    assert repo.snapshot_ids() == sorted(ids)[4:]
    listed = CliRunner().invoke(app, ["backup", "list", "--repo", str(tmp_path), "--json"])
    assert [s["snapshot_id"] for s in json.loads(listed.stdout)["snapshots"]] == sorted(ids)[4:]


class _PruneMidway(NullProgress):
    """Runs ``prune`` (default 6 h grace) each time the backup starts a phase."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.removed: list[str] = []
        self.phases = 0

    def phase(self, description: str, total_bytes: int) -> None:
        self.phases += 1
        result = prune(self.repo, RetentionSettings(), lock_wait_s=0.3)
        self.removed += result.removed_incomplete
        # the backup's shared lock keeps prune's chunk deletion off, and prune says whose it is
        assert result.chunks_skipped is not None and "shared lock" in result.chunks_skipped
        assert f"pid {os.getpid()}" in result.chunks_skipped and result.removed_chunks == 0


def test_long_running_backup_is_not_pruned(
    seeded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup that has run for 7 hours (longer than the 6 h grace) keeps its partial
    snapshot: its lease is fresh."""
    repo = Repository(str(tmp_path / "repo"))
    started = sid(datetime.now(UTC) - timedelta(hours=7), 7)
    monkeypatch.setattr(snapshot_mod, "new_snapshot_id", lambda: started)
    progress = _PruneMidway(repo)
    assert RetentionSettings().incomplete_grace_s < 7 * 3600
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9", progress=progress)
    assert progress.phases >= 1
    assert progress.removed == []
    assert result.snapshot_id == started
    assert [s.snapshot_id for s in repo.complete()] == [started]
    assert not (Path(repo.url) / started / LEASE_NAME).exists()  # removed at the end


def test_dead_backup_is_pruned_once_its_lease_is_stale(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    now = time.time()
    dead = sid(datetime.fromtimestamp(now, UTC) - timedelta(hours=7), 1)
    fake(repo, dead, complete=False)
    # its writer refreshed the lease until it died, 10 s ago
    repo.write_lease(dead, Lease(now - 10, LEASE_TTL_S, "host", 1))
    grace = policy(keep_last=5, incomplete_grace_s=6 * 3600)
    assert prune(repo, grace, now=now).removed_incomplete == []
    assert prune(repo, grace, now=now + LEASE_TTL_S - 20).removed_incomplete == []
    # nobody refreshed it for longer than its ttl: the grace (long past) applies
    assert prune(repo, grace, now=now + LEASE_TTL_S, dry_run=True).removed_incomplete == [dead]
    assert prune(repo, grace, now=now + LEASE_TTL_S).removed_incomplete == [dead]
    assert dead not in repo.snapshot_ids()


def test_stale_lease_within_grace_is_kept(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    now = time.time()
    young = sid(datetime.fromtimestamp(now, UTC) - timedelta(hours=1), 2)
    fake(repo, young, complete=False)
    repo.write_lease(young, Lease(now - 3 * LEASE_TTL_S, LEASE_TTL_S))
    assert prune(repo, policy(incomplete_grace_s=2 * 3600), now=now).removed_incomplete == []
    assert Lease.from_json(b"not json") is None


def test_lease_keeper_refreshes_and_removes(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path))
    snap = sid(NOW, 3)
    clock = iter(float(t) for t in range(1000, 2000))
    with LeaseKeeper(repo, snap, ttl_s=0.2, clock=lambda: next(clock)):
        first = repo.read_lease(snap)
        assert first is not None and first.ttl_s == 0.2
        deadline = time.monotonic() + 10
        while (lease := repo.read_lease(snap)) is not None and lease.refreshed_at == first.refreshed_at:
            assert time.monotonic() < deadline, "the lease was never refreshed"
            time.sleep(0.02)
        assert lease is not None and lease.refreshed_at > first.refreshed_at
    assert repo.read_lease(snap) is None
