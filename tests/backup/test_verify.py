"""``backup verify``: hashes, and a throwaway Chroma that must agree with the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl.backup import NoHold, Repository, create_snapshot
from chromactl.backup.recovery.fetch import CorruptSnapshotError
from chromactl.backup.recovery.verify import verify
from chromactl.cli import app

from .helpers import chunk_object


@pytest.fixture
def repo(seeded_dir: Path, tmp_path: Path) -> Repository:
    r = Repository(str(tmp_path / "repo"))
    create_snapshot(seeded_dir, r, NoHold(), chroma_version="1.5.9")
    return r


def test_hashes_only(repo: Repository) -> None:
    report = verify(repo)
    assert report.ok
    assert report.files_checked == len(repo.resolve().files)
    assert not report.chroma_checked


@pytest.mark.slow
def test_with_chroma(repo: Repository) -> None:
    report = verify(repo, start_chroma=True)
    assert report.ok, report
    assert report.chroma_checked
    assert report.sqlite_check == "ok"


def test_corrupt_object_is_reported(repo: Repository) -> None:
    sid = repo.resolve().snapshot_id
    entry = next(f for f in repo.resolve().files if f.path.endswith("data_level0.bin"))
    assert entry.chunks
    obj = chunk_object(repo, entry.chunks[0])
    blob = bytearray(obj.read_bytes())
    blob[-10] ^= 1
    obj.write_bytes(bytes(blob))
    report = verify(repo)
    assert not report.ok
    assert list(report.bad_files) == [entry.path]
    assert f"chunk {entry.chunks[0]} is damaged" in report.bad_files[entry.path]
    assert sid in report.bad_files[entry.path]
    out = CliRunner().invoke(app, ["backup", "verify", "--repo", repo.url, "--json"])
    assert out.exit_code == 1
    assert json.loads(out.stdout)["ok"] is False


@pytest.mark.slow
def test_count_mismatch_is_reported(repo: Repository) -> None:
    sid = repo.resolve().snapshot_id
    path = Path(repo.url) / sid / "manifest.json"
    data = json.loads(path.read_text())
    for col in data["collections"]:
        if col["name"] == "beta":
            col["count"] += 1
    path.write_text(json.dumps(data))
    report = verify(repo, start_chroma=True)
    assert not report.ok
    assert report.count_mismatches == {"beta": {"manifest": 301, "chroma": 300}}


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_chunk_is_named_with_every_snapshot_that_needs_it(
    seeded_dir: Path, tmp_path: Path, damage: str
) -> None:
    repo = Repository(str(tmp_path / "target"))
    ids = [create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9").snapshot_id for _ in range(2)]
    manifest = repo.read_manifest(str(ids[0]))
    entry = max(manifest.files, key=lambda f: f.size)
    assert entry.chunks
    chunk = entry.chunks[-1]
    obj = chunk_object(repo, chunk)
    if damage == "missing":
        obj.unlink()
    else:
        blob = bytearray(obj.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        obj.write_bytes(bytes(blob))
    problem = "is missing from the chunk store" if damage == "missing" else "is damaged"
    for sid in ids:
        report = verify(repo, str(sid))
        assert not report.ok and list(report.bad_files) == [entry.path]
        message = report.bad_files[entry.path]
        assert f"chunk {chunk} {problem}" in message
        assert f"snapshots that need it: {ids[0]}, {ids[1]}" in message
    out = CliRunner().invoke(app, ["backup", "verify", "--repo", repo.url])
    assert out.exit_code == 1 and chunk in out.output.replace("\n", "")
    with pytest.raises(CorruptSnapshotError, match=f"chunk {chunk} {problem}.*{ids[0]}, {ids[1]}"):
        from chromactl.backup import restore

        restore(repo, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
