"""The content-addressed repository (format 3, docs/backup-format.md): config.json, each chunk
stored once under chunks/, manifests listing chunks; a second snapshot uploads only what
changed; formats 1 and 2 still restore; encrypted chunk names are opaque."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from chromactl.backup import FORMAT_VERSION, NoHold, Repository, create_snapshot, restore
from chromactl.backup.recovery.verify import verify
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.repository.manifest import ManifestError

from .conftest import s3_repo
from .helpers import s3_repository, stored_keys, to_legacy_format

SECRET = b"a-secret-from-a-kubernetes-secret-0123"


def tree(path: Path) -> dict[str, str]:
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".chromactl")
    }


def stored_paths(repo: Repository) -> list[str]:
    return stored_keys(repo)


def open_repo(where: str, encrypted: bool, tmp_path: Path, request: pytest.FixtureRequest) -> Repository:
    secret = SECRET if encrypted else None
    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        url = request.getfixturevalue("s3_repo_url")
        return s3_repository(url, endpoint, secret=secret)
    return Repository(str(tmp_path / "target"), secret=secret)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip_stores_each_chunk_once(
    seeded_dir: Path, tmp_path: Path, where: str, encrypted: bool, request: pytest.FixtureRequest
) -> None:
    repo = open_repo(where, encrypted, tmp_path, request)
    first = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.resolve(str(first.snapshot_id))
    assert manifest.format_version == FORMAT_VERSION == 3
    hashes = manifest.chunk_hashes()
    n_chunks = sum(len(f.chunks or ()) for f in manifest.files)
    # every distinct chunk uploaded once
    assert first.uploaded_chunks == len(hashes) <= n_chunks
    assert first.uploaded_bytes == sum(ChunkStore(repo).listing().values())
    assert len(ChunkStore(repo).listing()) == len(hashes)

    paths = stored_paths(repo)
    assert "config.json" in paths
    config = json.loads(repo.store.load("config.json"))
    assert config == {
        "format_version": 3,
        "chunk_hash": "sha256",
        "chunk_size": 1 << 20,
        "compression": "zstd",
    }
    assert not [p for p in paths if "/files/" in p]  # no per-snapshot objects in format 3
    chunk_paths = [p for p in paths if p.startswith("chunks/")]
    assert all(p.split("/")[2].startswith(p.split("/")[1]) and len(p.split("/")[1]) == 2 for p in chunk_paths)
    names = {p.rsplit("/", 1)[-1] for p in chunk_paths}
    if encrypted:
        assert not names & hashes  # the bucket never sees a content hash
        for path in chunk_paths:
            raw = repo.store.load(path)
            assert raw.startswith(b"CHXE1") and b"default_tenant" not in raw
    else:
        assert names == hashes

    again = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    assert (again.uploaded_chunks, again.uploaded_bytes) == (0, 0)  # nothing changed: nothing uploaded
    assert again.reused_chunks == n_chunks
    restore(repo, tmp_path / "restored", snapshot=str(first.snapshot_id))
    assert tree(tmp_path / "restored") == {
        k: v for k, v in tree(seeded_dir).items() if k != "chroma.sqlite3"
    } | {"chroma.sqlite3": tree(tmp_path / "restored")["chroma.sqlite3"]}
    assert {f.path: f.sha256 for f in manifest.files} == tree(tmp_path / "restored")
    assert verify(repo, str(again.snapshot_id)).ok


def test_second_snapshot_uploads_only_the_changed_chunks(seeded_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    segment = max((p for p in data.rglob("data_level0.bin")), key=lambda p: p.stat().st_size).parent
    big = segment / "zz-large.bin"  # a segment file of several chunks
    big.write_bytes(os.urandom(5 << 20))
    repo = Repository(str(tmp_path / "target"))
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    with open(big, "r+b") as fh:  # a few bytes of its second chunk
        fh.seek((1 << 20) + 100)
        fh.write(b"changed!")
    second = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.read_manifest(str(second.snapshot_id))
    before = repo.read_manifest(str(first.snapshot_id)).chunk_hashes()
    new = manifest.chunk_hashes() - before
    assert len(new) == 1 and second.uploaded_chunks == 1
    entry = next(f for f in manifest.files if f.path == big.relative_to(data).as_posix())
    assert entry.chunks is not None and entry.chunk_sizes is not None
    assert entry.chunks[1] in new
    assert second.uploaded_bytes == entry.chunk_sizes[1]  # one compressed chunk, nothing else
    assert second.uploaded_bytes * 5 < first.uploaded_bytes  # 1 of 10 chunks, incompressible
    restore(repo, tmp_path / "restored", snapshot=str(second.snapshot_id))
    assert (tmp_path / "restored" / big.relative_to(data)).read_bytes() == big.read_bytes()


@pytest.mark.parametrize("version", [1, 2])
def test_format_1_and_2_snapshots_still_list_verify_and_restore(
    seeded_dir: Path, tmp_path: Path, version: int
) -> None:
    repo = Repository(str(tmp_path / "target"))
    old = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    to_legacy_format(repo, str(old.snapshot_id), version)
    (tmp_path / "target" / "config.json").unlink()  # a repository written before format 3
    shutil.rmtree(tmp_path / "target" / "chunks")
    repo = Repository(str(tmp_path / "target"))
    legacy = repo.resolve("latest")
    assert legacy.format_version == version and not legacy.chunked
    assert [s.snapshot_id for s in repo.complete()] == [old.snapshot_id]
    assert verify(repo, "latest").ok
    restore(repo, tmp_path / "restored")
    assert {f.path: f.sha256 for f in legacy.files} == tree(tmp_path / "restored")

    # a format-3 snapshot beside it: both restore, and prune's chunk deletion spares the old one
    new = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    from chromactl.backup.operations.prune import prune
    from chromactl.config import RetentionSettings

    result = prune(repo, RetentionSettings(keep_last=2))
    assert result.removed == [] and result.removed_chunks == 0
    for sid in (old.snapshot_id, new.snapshot_id):
        assert verify(repo, str(sid)).ok
        restore(repo, tmp_path / f"r-{sid}", snapshot=str(sid))


def test_a_repository_of_a_newer_format_is_refused(seeded_dir: Path, tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    config = tmp_path / "target" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "format_version": 4}))
    with pytest.raises(ManifestError, match="newer than this chromactl reads"):
        Repository(str(tmp_path / "target")).complete()
    with pytest.raises(ManifestError, match="newer"):
        create_snapshot(seeded_dir, Repository(str(tmp_path / "target")), NoHold(), chroma_version="1.5.9")
    sid = str(Repository(str(tmp_path / "target")).snapshot_ids()[0])
    for command in (
        lambda repo: repo.resolve(sid),
        lambda repo: repo.delete(sid),
        lambda repo: restore(repo, tmp_path / "restored"),
        lambda repo: verify(repo, sid),
    ):
        with pytest.raises(ManifestError, match="newer"):
            command(Repository(str(tmp_path / "target")))
    assert (tmp_path / "target" / sid / "manifest.json").exists()


def test_s3_second_snapshot_uploads_nothing_unchanged(
    seeded_dir: Path, tmp_path: Path, s3_endpoint: str, s3_repo_url: str
) -> None:
    repo = s3_repo(s3_repo_url, s3_endpoint)
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    (data / "extra.bin").write_bytes(b"x" * 5000)
    second = create_snapshot(data, s3_repo(s3_repo_url, s3_endpoint), NoHold(), chroma_version="1.5.9")
    assert second.uploaded_chunks == 1 and 0 < second.uploaded_bytes < 200
    assert first.uploaded_bytes > 100_000
    restore(repo, tmp_path / "restored")
    assert (tmp_path / "restored" / "extra.bin").read_bytes() == b"x" * 5000


def test_repository_sizes_count_shared_chunks_once(seeded_dir: Path, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from chromactl.backup.metrics import RepositoryMetrics, repository_sizes

    repo = Repository(str(tmp_path / "target"))
    old = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    to_legacy_format(repo, str(old.snapshot_id), 2)  # a format-2 snapshot counts its own objects
    for _ in range(2):
        create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    manifests = [s.manifest for s in repo.complete() if s.manifest]
    legacy = manifests[0]
    logical, stored = repository_sizes(manifests)
    assert logical == sum(m.total_size for m in manifests) == 3 * legacy.total_size
    assert stored == legacy.stored_size + sum(ChunkStore(repo).listing().values())
    assert stored < logical
    metrics = RepositoryMetrics(CollectorRegistry())
    metrics.measure(manifests)
    assert (metrics.size._value.get(), metrics.logical._value.get()) == (stored, logical)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_prune_deletes_the_chunks_no_snapshot_needs_on_s3(
    seeded_dir: Path, tmp_path: Path, s3_endpoint: str, s3_repo_url: str, encrypted: bool
) -> None:
    from chromactl.backup.operations.prune import prune
    from chromactl.config import RetentionSettings

    def repo() -> Repository:
        return s3_repository(s3_repo_url, s3_endpoint, secret=SECRET if encrypted else None)

    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    segment = next(p for p in data.iterdir() if p.is_dir())
    (segment / "zz-large.bin").write_bytes(os.urandom(3 << 20))
    first = create_snapshot(data, repo(), NoHold(), chroma_version="1.5.9")
    (segment / "zz-large.bin").write_bytes(os.urandom(3 << 20))  # three chunks only the first needs
    second = create_snapshot(data, repo(), NoHold(), chroma_version="1.5.9")
    keep_one = RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    dry = prune(repo(), keep_one, dry_run=True)
    assert dry.removed == [first.snapshot_id] and dry.removed_chunks == 3
    assert len(ChunkStore(repo()).listing()) == first.uploaded_chunks + second.uploaded_chunks
    result = prune(repo(), keep_one)
    assert result.removed == [first.snapshot_id] and result.chunks_skipped is None
    assert result.removed_chunks == 3 and result.removed_chunk_bytes > 3 << 20
    store = ChunkStore(repo())
    needed = repo().read_manifest(str(second.snapshot_id)).chunk_hashes()
    assert set(store.listing()) == {store.key(c) for c in needed}
    assert repo().read_locks() == {}
    assert verify(repo(), str(second.snapshot_id)).ok


def test_chunks_unchanged_since_the_previous_snapshot_are_not_hashed_again(
    seeded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromactl.backup.repository.chunkstore import ChunkUploader

    hashed: list[int] = []
    real = ChunkUploader._store_one

    def counting(self: ChunkUploader, chunk: bytes):  # type: ignore[no-untyped-def]
        hashed.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(ChunkUploader, "_store_one", counting)
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    repo = Repository(str(tmp_path / "target"))
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    manifest = repo.read_manifest(str(first.snapshot_id))
    assert len(hashed) == sum(len(f.chunks or ()) for f in manifest.files)
    assert all(f.chunk_xxh3 is not None and len(f.chunk_xxh3) == len(f.chunks or ()) for f in manifest.files)
    hashed.clear()
    again = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    assert hashed == [] and again.uploaded_chunks == 0  # every chunk known by its xxh3 digest
    big = max((f for f in manifest.files if f.path != "chroma.sqlite3"), key=lambda f: f.size)
    with open(data / big.path, "r+b") as fh:
        fh.write(b"changed")
    third = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    assert len(hashed) == 1 and third.uploaded_chunks == 1
    restore(repo, tmp_path / "restored")
    assert (tmp_path / "restored" / big.path).read_bytes() == (data / big.path).read_bytes()


def test_a_listing_of_the_chunk_store_does_not_hide_chunks_uploaded_since(
    seeded_dir: Path, tmp_path: Path, s3_endpoint: str, s3_repo_url: str
) -> None:
    """The S3 client caches listings: a process that listed the chunk store must still read the
    chunks another process uploaded afterwards (a drill or verify in the pod after a backup)."""
    data = tmp_path / "data"
    shutil.copytree(seeded_dir, data)
    segment = next(p for p in data.iterdir() if p.is_dir())
    (segment / "zz-large.bin").write_bytes(os.urandom(40 << 20))
    here = s3_repo(s3_repo_url, s3_endpoint)
    create_snapshot(data, here, NoHold(), chroma_version="1.5.9")
    assert create_snapshot(data, here, NoHold(), chroma_version="1.5.9").uploaded_chunks == 0  # listed
    (segment / "zz-large.bin").write_bytes(os.urandom(40 << 20))
    elsewhere = create_snapshot(data, s3_repo(s3_repo_url, s3_endpoint), NoHold(), chroma_version="1.5.9")
    assert elsewhere.uploaded_chunks == 40
    report = verify(here, str(elsewhere.snapshot_id))
    assert report.ok, report.bad_files


def test_s3_reads_each_chunk_in_one_request(
    seeded_dir: Path, s3_endpoint: str, s3_repo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = s3_repository(s3_repo_url, s3_endpoint)  # the s3 scheme's options: one GET a chunk
    create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    chunk = sorted(repo.resolve().chunk_hashes())[0]
    calls: list[str] = []
    s3 = repo.store.inner.fs  # the s3fs client under the retry wrapper
    real = s3._call_s3

    async def counting(method: str, *args: object, **kwargs: object) -> object:
        calls.append(method)
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(s3, "_call_s3", counting)
    ChunkStore(repo).read(chunk)
    assert calls == ["get_object"]
