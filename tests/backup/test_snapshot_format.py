"""The snapshot format: zstd objects, hashes of the content, manifest written last."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import zstandard

from chromactl import __version__
from chromactl.backup import FORMAT_VERSION, NoHold, Repository, create_snapshot
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.repository.manifest import ManifestError
from chromactl.backup.snapshot.files import MARKER_NAME
from chromactl.backup.snapshot.hold import CallbackHold
from chromactl.storage import StoreError

from .helpers import to_legacy_format


def test_manifest_describes_every_file(seeded_dir: Path, tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    assert result.outcome == "success"
    root = tmp_path / "repo" / str(result.snapshot_id)
    data = json.loads((root / "manifest.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["chroma_version"] == "1.5.9"
    assert data["chromactl_version"] == __version__
    assert data["created_at"].endswith("Z")
    assert data["compression"] == "zstd" and data["hash"] == "sha256"

    on_disk = sorted(p.relative_to(seeded_dir).as_posix() for p in seeded_dir.rglob("*") if p.is_file())
    assert sorted(f["path"] for f in data["files"]) == on_disk
    chunks = tmp_path / "repo" / "chunks"
    for entry in data["files"]:
        objects = [chunks / c[:2] / c for c in entry["chunks"]]
        assert [p.stat().st_size for p in objects] == entry["chunk_sizes"]
        assert sum(entry["chunk_sizes"]) == entry["stored_size"] and entry["stored_sha256"] == ""
        content = b"".join(zstandard.ZstdDecompressor().decompress(p.read_bytes()) for p in objects)
        assert [
            hashlib.sha256(content[i : i + (1 << 20)]).hexdigest() for i in range(0, len(content), 1 << 20)
        ] == entry["chunks"]
        assert len(content) == entry["size"]
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        if entry["path"] != "chroma.sqlite3":  # the database is a backup-API copy
            assert content == (seeded_dir / entry["path"]).read_bytes()

    counts = {c["name"]: c["count"] for c in data["collections"]}
    assert counts == {"alpha": 2500, "beta": 300}
    assert {c["tenant"] for c in data["collections"]} == {"default_tenant"}
    assert result.records == 2800


def test_manifest_is_written_last(seeded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository(str(tmp_path / "repo"))
    order: list[str] = []
    real_save = repo.store.save

    def save(key: str, data: bytes, *, what: str = "") -> None:
        order.append(key)
        real_save(key, data, what=what)

    monkeypatch.setattr(repo.store, "save", save)
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    # the lease of the running backup is written like every object, before the first chunk
    lease = f"{result.snapshot_id}/lease.json"
    assert order.index(lease) < min(i for i, k in enumerate(order) if k.startswith("chunks/"))
    order = [k for k in order if k != lease]
    assert order[0] == "config.json"
    # the shared lock is taken before the first chunk is uploaded
    assert order[1].startswith("locks/") and order[2].startswith("chunks/")
    manifests = [p for p in order if p.endswith("manifest.json")]
    assert manifests == [f"{result.snapshot_id}/manifest.json"]
    # last of the snapshot's objects (only the lock's release may follow)
    assert all(p.startswith("locks/") for p in order[order.index(manifests[0]) + 1 :])
    sqlite = next(f for f in repo.read_manifest(str(result.snapshot_id)).files if f.path == "chroma.sqlite3")
    assert sqlite.chunks and all(f"chunks/{c[:2]}/{c}" in order for c in sqlite.chunks)


def test_restore_marker_is_not_part_of_a_snapshot(seeded_dir: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    (data / MARKER_NAME).write_text('{"snapshot_id": "x"}')
    repo = Repository(str(tmp_path / "repo"))
    create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.resolve("latest")
    assert MARKER_NAME not in {f.path for f in manifest.files}


def test_snapshot_without_manifest_is_not_listed(seeded_dir: Path, tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "repo"))
    first = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    second = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    (tmp_path / "repo" / str(second.snapshot_id) / "manifest.json").unlink()
    assert [s.snapshot_id for s in repo.complete()] == [first.snapshot_id]
    assert repo.resolve("latest").snapshot_id == first.snapshot_id
    with pytest.raises(ManifestError, match="incomplete"):
        repo.resolve(str(second.snapshot_id))


def test_newer_format_is_refused(seeded_dir: Path, tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    path = tmp_path / "repo" / str(result.snapshot_id) / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="newer"):
        repo.resolve(str(result.snapshot_id))


def test_not_a_chroma_dir_is_refused(tmp_path: Path) -> None:
    from chromactl.backup.snapshot.create import SnapshotError

    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotError, match="not a Chroma data directory"):
        create_snapshot(tmp_path / "empty", Repository(str(tmp_path / "r")), NoHold(), chroma_version="1.5.9")
    with pytest.raises(StoreError, match="no backup target"):
        Repository("")


def test_chunks_are_one_frame_each_and_read_by_zstd(seeded_dir: Path, tmp_path: Path) -> None:
    import subprocess

    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.resolve(str(result.snapshot_id))
    assert manifest.chunk_size == 1 << 20
    big = max(manifest.files, key=lambda f: f.size)
    assert big.chunks is not None and len(big.chunks) == -(-big.size // manifest.chunk_size) > 1
    objects = [tmp_path / "repo" / "chunks" / c[:2] / c for c in big.chunks]
    for i, obj in enumerate(objects):  # each object is exactly one frame of one chunk
        data = obj.read_bytes()
        params = zstandard.get_frame_parameters(data)
        last = i == len(objects) - 1
        assert params.content_size == (big.size - i * manifest.chunk_size if last else manifest.chunk_size)
        one = zstandard.ZstdDecompressor().decompressobj()
        one.decompress(data)
        assert one.unused_data == b""
    # the file is the chunks' frames, concatenated: an ordinary zstd stream
    out = subprocess.run(["zstd", "-d", "-c", *map(str, objects)], capture_output=True, check=True).stdout
    assert hashlib.sha256(out).hexdigest() == big.sha256


def test_format_1_snapshots_still_restore(seeded_dir: Path, tmp_path: Path) -> None:
    """A snapshot written by chromactl before format 2: one zstd frame per file,
    ``format_version: 1`` and no ``chunk_size``."""
    from chromactl.backup import restore

    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    to_legacy_format(repo, str(result.snapshot_id), 1)
    root = tmp_path / "repo" / str(result.snapshot_id)
    data = json.loads((root / "manifest.json").read_text())
    shutil.rmtree(tmp_path / "repo" / "chunks")  # format 1 reads its own objects only
    assert repo.resolve(str(result.snapshot_id)).chunk_size == 0
    restore(repo, tmp_path / "restored")
    for entry in data["files"]:
        got = (tmp_path / "restored" / entry["path"]).read_bytes()
        assert hashlib.sha256(got).hexdigest() == entry["sha256"]


def test_ids_of_snapshots_taken_within_one_second_sort_in_creation_order() -> None:
    # prune keeps the newest by id: two snapshots in the same second must not swap places
    from datetime import UTC, datetime

    from chromactl.backup.repository.repository import SNAPSHOT_ID_RE, new_snapshot_id

    times = [datetime(2026, 3, 15, 12, 0, 0, ms * 1000, tzinfo=UTC) for ms in range(0, 1000, 7)]
    ids = [new_snapshot_id(t) for t in times]
    assert all(SNAPSHOT_ID_RE.match(i) for i in ids)
    assert sorted(ids) == ids


def test_cut_uploads_only_files_whose_content_changed(
    seeded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose stat changed but not its content keeps its first-pass object; a file
    whose content changed is uploaded again once."""
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    seg = sorted(p for p in data.rglob("*.bin") if p.stat().st_size > 0)
    touched, changed = seg[0], seg[1]

    def acquire(_timeout: float) -> object:
        st = touched.stat()
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with open(changed, "r+b") as fh:
            first = fh.read(1)
            fh.seek(0)
            fh.write(bytes([first[0] ^ 0xFF]))
        return None

    repo = Repository(str(tmp_path / "repo"))
    first_chunk = hashlib.sha256(changed.read_bytes()[: 1 << 20]).hexdigest()
    result = create_snapshot(data, repo, CallbackHold(acquire, lambda _t: None), chroma_version="1.5.9")
    rel = {p: p.relative_to(data).as_posix() for p in (touched, changed)}
    assert result.recopied_files >= 1
    manifest = repo.read_manifest(str(result.snapshot_id))
    # every chunk of the snapshot once, and the first-pass chunk the cut replaced: no other upload
    uploaded = set(ChunkStore(repo).listing())
    assert uploaded == manifest.chunk_hashes() | {first_chunk}
    assert result.uploaded_chunks == len(uploaded)
    assert manifest.consistency == "online"
    by_path = {f.path: f for f in manifest.files}
    assert by_path[rel[changed]].sha256 == hashlib.sha256(changed.read_bytes()).hexdigest()
    assert by_path[rel[touched]].sha256 == hashlib.sha256(touched.read_bytes()).hexdigest()
