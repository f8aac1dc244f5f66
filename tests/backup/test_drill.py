"""Restore drills (docs/backup.md, "Restore drills"): a snapshot restored into a throwaway
Chroma passes; a damaged object, or records the vector index lost, fail it by name; the
report is kept in the target so a restarted gateway still knows the last pass."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from chromactl.backup import NoHold, Repository, create_snapshot
from chromactl.backup.recovery.drill import DrillReport, drill, last_success, record
from chromactl.backup.recovery.verify import verify

from .helpers import chunk_object, copy_tree

CHROMACTL = str(Path(sys.executable).with_name("chromactl"))


def test_a_good_snapshot_passes_and_the_report_is_kept(tmp_path: Path, seeded_dir: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    snap = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    out = subprocess.run(
        [CHROMACTL, "backup", "drill", "--repo", str(tmp_path / "target"), "--sample", "7", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    report = json.loads(out.stdout)
    assert report["snapshot_id"] == snap.snapshot_id and report["outcome"] == "success"
    assert (report["collections"], report["records"], report["sampled"]) == (2, 2800, 14)
    assert last_success(repo) is not None
    assert abs((last_success(repo) or 0) - report["finished_at"]) < 1.5


def test_a_damaged_object_fails_the_drill_naming_file_and_snapshot(tmp_path: Path, seeded_dir: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    snap = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.read_manifest(snap.snapshot_id or "")
    entry = max(manifest.files, key=lambda f: f.stored_size)
    assert entry.chunks
    obj = chunk_object(repo, entry.chunks[0])
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    report = drill(repo, sample=3)
    assert report.outcome == "failure"
    assert (
        f"snapshot {manifest.snapshot_id} is corrupt" in report.problems[0]
        and entry.path in report.problems[0]
    )
    # the same words as backup verify: the chunk, and every snapshot that needs it
    checked = verify(repo, manifest.snapshot_id)
    assert checked.bad_files[entry.path] in report.problems[0]
    assert f"chunk {entry.chunks[0]} is damaged" in report.problems[0]
    assert f"snapshots that need it: {manifest.snapshot_id}" in report.problems[0]
    record(repo, report)
    assert last_success(repo) is None  # a failed drill is no pass


def test_records_the_vector_index_lost_fail_the_drill(tmp_path: Path, seeded_dir: Path) -> None:
    """The metadata says a record exists, the vector index cannot find it: the counts match,
    the sample does not."""
    data = copy_tree(seeded_dir, tmp_path / "data")
    conn = sqlite3.connect(data / "chroma.sqlite3")
    # alpha's persisted vector index is gone: Chroma serves the metadata, and its index holds
    # only the records replayed from the write log.
    (vector,) = conn.execute(
        "SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection "
        "WHERE c.name = 'alpha' AND s.scope = 'VECTOR'"
    ).fetchone()
    conn.close()
    shutil.rmtree(data / vector)
    repo = Repository(str(tmp_path / "target"))
    create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    report = drill(repo, sample=3)
    assert report.outcome == "failure", report
    assert any(p.startswith("collection alpha: reading records failed") for p in report.problems), report


def test_old_reports_are_dropped(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    for i in range(55):
        record(repo, DrillReport(snapshot_id="s", outcome="success", finished_at=1_700_000_000 + i))
    assert len(list((tmp_path / "target" / "drills").iterdir())) == 50
    assert last_success(repo) == 1_700_000_054
