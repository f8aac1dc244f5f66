"""``backup verify``: hashes, and a throwaway Chroma that must agree with the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl.backup import NoHold, Repository, create_snapshot
from chromactl.backup.verify import verify
from chromactl.cli import app


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
    obj = next((Path(repo.root) / sid / "files").rglob("data_level0.bin.zst"))
    blob = bytearray(obj.read_bytes())
    blob[-10] ^= 1
    obj.write_bytes(bytes(blob))
    report = verify(repo)
    assert not report.ok
    assert list(report.bad_files) == [
        obj.relative_to(Path(repo.root) / sid / "files").as_posix().removesuffix(".zst")
    ]
    out = CliRunner().invoke(app, ["backup", "verify", "--repo", repo.url, "--json"])
    assert out.exit_code == 1
    assert json.loads(out.stdout)["ok"] is False


@pytest.mark.slow
def test_count_mismatch_is_reported(repo: Repository) -> None:
    sid = repo.resolve().snapshot_id
    path = Path(repo.root) / sid / "manifest.json"
    data = json.loads(path.read_text())
    for col in data["collections"]:
        if col["name"] == "beta":
            col["count"] += 1
    path.write_text(json.dumps(data))
    report = verify(repo, start_chroma=True)
    assert not report.ok
    assert report.count_mismatches == {"beta": {"manifest": 301, "chroma": 300}}
