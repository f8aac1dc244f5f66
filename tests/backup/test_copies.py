"""Off-site copies (docs/backup.md, "Off-site copies"): incremental, checked on the way,
restorable from the copy, each with its own retention; the pod copies after each backup and a
copy that fails does not fail the backup."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from chromactl.backup import NoHold, Repository, create_snapshot, restore
from chromactl.backup.operations.copies import copy_to
from chromactl.backup.recovery.verify import verify
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.repository.repository import repository_of
from chromactl.config import BackupSettings, CopySettings, RetentionSettings

from .conftest import s3_repo
from .helpers import chunk_object, free_port, run_chroma, seed
from .test_agent import chromactl_gateway, gateway_config, metrics, trigger
from .test_continuous import _snapshot_with_journal

KEEP_ONE = RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)


def test_copies_are_incremental_and_restore_like_the_primary(
    tmp_path: Path, seeded_dir: Path, s3_endpoint: str, s3_repo_url: str
) -> None:
    primary, _, _ = _snapshot_with_journal(tmp_path, seeded_dir)
    copy = s3_repo(s3_repo_url, s3_endpoint)
    first = copy_to(primary, copy)
    assert first.outcome == "success", first.error
    assert first.copied == [s.snapshot_id for s in primary.complete()] and first.journal_segments == 1
    assert first.bytes == sum(ChunkStore(copy).listing().values())  # each chunk once

    again = copy_to(primary, copy)
    assert (again.copied, again.already, again.journal_segments) == ([], 1, 0)
    create_snapshot(seeded_dir, primary, NoHold(), chroma_version="1.5.9")
    third = copy_to(primary, copy)
    assert len(third.copied) == 1 and third.already == 1

    assert verify(copy, "latest").ok
    # A point in time from the copy alone: its snapshots and the journal copied with them.
    assert restore(copy, tmp_path / "from-copy", to_time="latest").to_time is not None
    older = restore(copy, tmp_path / "older", snapshot=primary.complete()[0].snapshot_id)
    assert older.files == len(primary.complete()[0].manifest.files)  # type: ignore[union-attr]


def test_a_copy_has_its_own_credentials_and_retention(
    tmp_path: Path, seeded_dir: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .helpers import make_bucket

    make_bucket(s3_endpoint, "offsite")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)  # the copy's keys come from its own Secret only
    keys = tmp_path / "offsite-keys"
    keys.mkdir()
    (keys / "AWS_ACCESS_KEY_ID").write_text("offsite-key\n")
    (keys / "AWS_SECRET_ACCESS_KEY").write_text("offsite-secret\n")
    settings = CopySettings(target="s3://offsite/chroma", endpoint_url=s3_endpoint, credentials_dir=keys)
    copy = repository_of(BackupSettings(target=str(tmp_path / "primary")), settings)
    primary = Repository(str(tmp_path / "primary"))
    for _ in range(2):
        create_snapshot(seeded_dir, primary, NoHold(), chroma_version="1.5.9")
    result = copy_to(primary, copy, KEEP_ONE)
    assert result.outcome == "success", result.error
    assert len(result.copied) == 2 and len(result.pruned) == 1
    assert [s.snapshot_id for s in copy.complete()] == [primary.complete()[-1].snapshot_id]
    assert len(primary.complete()) == 2  # the primary keeps its own


def test_a_damaged_object_is_not_copied_and_the_copy_stays_incomplete(
    tmp_path: Path, seeded_dir: Path
) -> None:
    primary = Repository(str(tmp_path / "primary"))
    snap = create_snapshot(seeded_dir, primary, NoHold(), chroma_version="1.5.9")
    manifest = primary.read_manifest(snap.snapshot_id or "")
    chunk = sorted(manifest.chunk_hashes())[0]
    damaged = chunk_object(primary, chunk)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    copy = Repository(str(tmp_path / "copy"))
    result = copy_to(primary, copy)
    assert result.outcome == "failure" and f"chunk {chunk} is damaged" in (result.error or "")
    assert copy.complete() == [] and copy.snapshots() == []  # no manifest: nothing restorable
    assert chunk not in {p.name for p in (tmp_path / "copy" / "chunks").rglob("*")}


@pytest.mark.slow
def test_the_pod_copies_after_each_backup_and_a_failing_copy_does_not_fail_it(tmp_path: Path) -> None:
    data, target = tmp_path / "data", tmp_path / "snapshots"
    dead = f"http://127.0.0.1:{free_port()}"
    copies = [
        {
            "target": str(tmp_path / "offsite"),
            "retention": {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0},
        },
        {"target": "s3://gone/chroma", "endpoint_url": dead},
    ]
    with run_chroma(data) as chroma:
        seed(chroma.url, {"coll": 50})
        config = gateway_config(tmp_path, chroma.url, data, str(target), copies=copies, retry_attempts=1)
        with chromactl_gateway(tmp_path, config) as (url, settings):
            for _ in range(2):
                done = trigger(url, tmp_path / "secrets" / "admin", "--json")
                assert done.returncode == 0, done.stderr  # the backup succeeded
            run = yaml.safe_load(done.stdout)
            good, bad = run["copies"]
            assert good["outcome"] == "success" and len(good["copied"]) == 1 and good["pruned"]
            assert bad["outcome"] == "failure" and "s3://gone/chroma" in bad["error"]
            m = metrics(settings)
            assert m[f"chromactl_backup_copy_last_outcome{{target={tmp_path / 'offsite'}}}"] == 1
            assert m["chromactl_backup_copy_last_outcome{target=s3://gone/chroma}"] == 0
            assert m["chromactl_backup_copy_runs_total{outcome=failure,target=s3://gone/chroma}"] == 2
            snaps = Repository(str(target)).complete()
            # two snapshots of the same data: stored once, counted twice in the logical size
            assert m["chromactl_backup_repository_bytes"] == sum(
                ChunkStore(Repository(str(target))).listing().values()
            )
            assert m["chromactl_backup_repository_logical_bytes"] == sum(
                s.manifest.total_size for s in snaps if s.manifest
            )
            assert 0 < time.time() - m["chromactl_backup_earliest_recoverable_timestamp_seconds"] < 600
    offsite = Repository(str(tmp_path / "offsite"))
    assert [s.snapshot_id for s in offsite.complete()] == [snaps[-1].snapshot_id]
    assert json.loads((tmp_path / "offsite" / snaps[-1].snapshot_id / "manifest.json").read_text())


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_copy_sends_only_the_chunks_the_copy_lacks(
    tmp_path: Path, seeded_dir: Path, encrypted: bool
) -> None:
    import os
    import shutil

    secret = b"a-secret-from-a-kubernetes-secret-0123" if encrypted else None
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    segment = next(p for p in data.iterdir() if p.is_dir())
    (segment / "zz-large.bin").write_bytes(os.urandom(4 << 20))
    primary = Repository(str(tmp_path / "primary"), secret=secret)
    copy = Repository(str(tmp_path / "copy"), secret=secret)
    create_snapshot(data, primary, NoHold(), chroma_version="1.5.9")
    first = copy_to(primary, copy)
    assert first.outcome == "success", first.error
    assert (tmp_path / "copy" / "config.json").exists()
    assert first.chunks == len(ChunkStore(copy).listing()) == len(primary.resolve().chunk_hashes())

    with open(segment / "zz-large.bin", "r+b") as fh:  # one chunk changes
        fh.seek((2 << 20) + 5)
        fh.write(b"changed")
    second = create_snapshot(data, primary, NoHold(), chroma_version="1.5.9")
    again = copy_to(primary, copy)
    assert again.outcome == "success" and again.copied == [second.snapshot_id]
    assert again.chunks == 1 and again.bytes == second.uploaded_bytes
    # the copy's manifest states the copy's own stored sizes, and restores
    copied = copy.resolve(str(second.snapshot_id))
    assert sum(f.stored_size for f in copied.files) == sum(
        ChunkStore(copy).listing()[ChunkStore(copy).key(c)] for f in copied.files for c in f.chunks or ()
    )
    assert verify(copy, str(second.snapshot_id)).ok
    restore(copy, tmp_path / "restored")
    assert (tmp_path / "restored" / "zz-large.bin").exists() is False
    rel = (segment / "zz-large.bin").relative_to(data)
    assert (tmp_path / "restored" / rel).read_bytes() == (segment / "zz-large.bin").read_bytes()
