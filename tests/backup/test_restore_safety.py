"""Restore refuses what would lose data and leaves the target untouched when it does."""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl.backup import NoHold, Repository, create_snapshot, restore
from chromactl.backup.recovery.fetch import CorruptSnapshotError
from chromactl.backup.recovery.restore import RestoreError
from chromactl.backup.snapshot.files import MARKER_NAME
from chromactl.cli import app

from .helpers import chunk_object

RESTORE_MOD = importlib.import_module("chromactl.backup.recovery.restore")
FETCH_MOD = importlib.import_module("chromactl.backup.recovery.fetch")


@pytest.fixture
def repo(seeded_dir: Path, tmp_path: Path) -> Repository:
    r = Repository(str(tmp_path / "repo"))
    create_snapshot(seeded_dir, r, NoHold(), chroma_version="1.5.9")
    return r


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".chromactl-" in p.name and p.name != MARKER_NAME]


@pytest.fixture
def occupied(tmp_path: Path) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    (target / "chroma.sqlite3").write_bytes(b"data written since")
    return target


def test_restore_into_empty_target(repo: Repository, seeded_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    target.mkdir()
    (target / "lost+found").mkdir()  # a fresh volume's only entry does not count as data
    result = restore(repo, target)
    assert result.outcome == "restored"
    restored = tree(target)
    original = tree(seeded_dir)
    assert set(restored) - {MARKER_NAME} == set(original)
    for name, content in original.items():
        if name != "chroma.sqlite3":
            assert restored[name] == content
    assert json.loads(restored[MARKER_NAME])["snapshot_id"] == result.snapshot_id
    assert leftovers(tmp_path) == []


def test_non_empty_target_refused_without_force(repo: Repository, occupied: Path) -> None:
    before = tree(occupied)
    with pytest.raises(RestoreError, match="not empty"):
        restore(repo, occupied)
    assert tree(occupied) == before
    result = restore(repo, occupied, force=True)
    assert result.outcome == "restored"
    assert (occupied / "chroma.sqlite3").read_bytes() != b"data written since"
    assert leftovers(occupied.parent) == []


def test_newer_chroma_refused(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match=r"newer than the target's 1\.0\.0"):
        restore(repo, tmp_path / "t", target_chroma_version="1.0.0")
    assert not (tmp_path / "t").exists()
    assert restore(repo, tmp_path / "t2", target_chroma_version="1.5.10").outcome == "restored"


def _objects(repo: Repository) -> list[Path]:
    """The chunk objects of the latest snapshot, smallest first."""
    chunks = repo.resolve("latest").chunk_hashes()
    return sorted((chunk_object(repo, c) for c in chunks), key=lambda p: p.stat().st_size)


def test_corrupt_snapshot_refused_target_untouched(repo: Repository, occupied: Path) -> None:
    victim = _objects(repo)[-1]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    before = tree(occupied)
    with pytest.raises(CorruptSnapshotError, match="corrupt or partial"):
        restore(repo, occupied, force=True)
    assert tree(occupied) == before
    assert leftovers(occupied.parent) == []


def test_partial_snapshot_refused(repo: Repository, occupied: Path) -> None:
    _objects(repo)[0].unlink()
    before = tree(occupied)
    with pytest.raises(CorruptSnapshotError, match="missing"):
        restore(repo, occupied, force=True)
    assert tree(occupied) == before


def test_truncated_object_refused(repo: Repository, tmp_path: Path) -> None:
    victim = _objects(repo)[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(CorruptSnapshotError):
        restore(repo, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert leftovers(tmp_path) == []


def test_not_enough_space_refused_before_writing(
    repo: Repository, occupied: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(RESTORE_MOD.shutil, "disk_usage", lambda p: real(p)._replace(free=1024))
    before = tree(occupied)
    with pytest.raises(RestoreError, match="not enough space"):
        restore(repo, occupied, force=True)
    assert tree(occupied) == before
    assert leftovers(occupied.parent) == []


def test_disk_full_while_writing(repo: Repository, occupied: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_fsync = os.fsync

    def full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(FETCH_MOD.os, "fsync", full)
    before = tree(occupied)
    with pytest.raises(RestoreError, match="disk full"):
        restore(repo, occupied, force=True)
    assert tree(occupied) == before
    assert leftovers(occupied.parent) == []


def test_if_not_restored_is_idempotent(repo: Repository, seeded_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "data"
    first = restore(repo, target, if_not_restored=True)
    assert first.outcome == "restored"
    (target / "written-since").write_text("new data")
    create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")  # a newer snapshot
    second = restore(repo, target, if_not_restored=True, force=True)
    assert second.outcome == "skipped"
    assert second.snapshot_id == first.snapshot_id
    assert (target / "written-since").read_text() == "new data"


def test_if_not_restored_refuses_unmarked_data(repo: Repository, occupied: Path) -> None:
    with pytest.raises(RestoreError, match="no restore marker"):
        restore(repo, occupied, if_not_restored=True)
    assert (occupied / "chroma.sqlite3").read_bytes() == b"data written since"


def test_mount_point_target_is_swapped_in_place(
    repo: Repository, occupied: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ismount = os.path.ismount
    monkeypatch.setattr(RESTORE_MOD.os.path, "ismount", lambda p: Path(p) == occupied or real_ismount(p))
    (occupied / "lost+found").mkdir()
    inode = occupied.stat().st_ino
    result = restore(repo, occupied, force=True)
    assert result.outcome == "restored"
    assert occupied.stat().st_ino == inode  # the directory itself stayed
    assert (occupied / "lost+found").is_dir()
    assert (occupied / MARKER_NAME).exists()
    assert leftovers(occupied) == []


def test_restore_cli(repo: Repository, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["restore", "--repo", repo.url, "--data-dir", str(tmp_path / "d"), "--json"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["outcome"] == "restored"
    again = runner.invoke(app, [*args, "--if-not-restored"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["outcome"] == "skipped"
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0
    assert isinstance(refused.exception, RestoreError)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MiB tmpfs mounted for the test (we run as root), unmounted after."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mnt)],
        check=True,
        capture_output=True,
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def _fill(path: Path, leave: int) -> None:
    """Use up the free space of ``path``'s filesystem but ``leave`` bytes."""
    free = shutil.disk_usage(path).free
    with open(path / "filler.bin", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("layout", ["mount-point", "subdirectory"])
def test_disk_full_on_a_real_filesystem(
    repo: Repository, small_disk: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore runs out of space part-way (another writer filled the disk after the
    space check): a clear error, the old data untouched, no temporary directory left."""
    target = small_disk if layout == "mount-point" else small_disk / "data"
    target.mkdir(exist_ok=True)
    (target / "chroma.sqlite3").write_bytes(b"the data written since" * 1000)
    (target / "seg").mkdir()
    (target / "seg" / "data_level0.bin").write_bytes(os.urandom(1 << 20))
    before = tree(target)
    manifest = repo.resolve()
    assert manifest.total_size > 2 << 20  # more than the space the filler leaves

    real_check = RESTORE_MOD.check_space
    filler_dir = small_disk if layout == "subdirectory" else small_disk / "seg"

    def check_then_fill(where: Path, needed: int) -> None:
        real_check(where, needed)
        _fill(filler_dir, leave=1 << 20)

    monkeypatch.setattr(RESTORE_MOD, "check_space", check_then_fill)
    with pytest.raises(RestoreError, match="disk full") as err:
        restore(repo, target, force=True)
    assert "the target was not touched" in str(err.value)
    (filler_dir / "filler.bin").unlink()
    assert tree(target) == before
    assert leftovers(small_disk) == [] and leftovers(target) == []
    # with the space back, the same restore goes through
    monkeypatch.setattr(RESTORE_MOD, "check_space", real_check)
    assert restore(repo, target, force=True).outcome == "restored"
    assert leftovers(small_disk) == [] and leftovers(target) == []


def test_not_enough_space_on_a_real_filesystem(repo: Repository, small_disk: Path) -> None:
    target = small_disk / "data"
    target.mkdir()
    (target / "chroma.sqlite3").write_bytes(b"kept")
    _fill(small_disk, leave=repo.resolve().total_size // 2)
    result = CliRunner().invoke(app, ["restore", "--repo", repo.url, "--data-dir", str(target), "--force"])
    assert result.exit_code != 0
    assert "not enough space" in str(result.exception) or "not enough space" in result.output
    assert (target / "chroma.sqlite3").read_bytes() == b"kept"
    assert leftovers(small_disk) == []
