"""Client-side encryption (docs/backup.md, "Encryption"): round trips under a writer with the
target encrypted (local and the S3 API server), no plaintext and no file name in any stored
object, a wrong or missing key refused before anything is read, key rotation without
re-uploading, a damaged or moved object refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chromactl.backup import NoHold, Repository, create_snapshot, restore
from chromactl.backup.continuous.shipper import Shipper
from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.metrics import JournalMetrics
from chromactl.backup.repository.crypto import EncryptionError, key_id
from chromactl.journal import Spool

from .helpers import s3_repository, stored_keys
from .test_round_trip import round_trip

SECRET = b"a-secret-from-a-kubernetes-secret-0123"
OTHER = b"another-secret-entirely-4567890123"


def stored_objects(repo: Repository) -> dict[str, bytes]:
    return {key: repo.store.load(key) for key in stored_keys(repo)}


def assert_opaque(repo: Repository, *plaintexts: bytes) -> None:
    objects = stored_objects(repo)
    assert objects
    for path, data in objects.items():
        if path.endswith(("lease.json", ".tmp")):
            continue
        for text in plaintexts:
            assert text not in data, f"{text!r} in {path}"
        assert "chroma.sqlite3" not in path and "data_level0" not in path, path


@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip_under_a_writer_with_encryption(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        url = request.getfixturevalue("s3_repo_url")
        repo = s3_repository(url, endpoint, secret=SECRET)
    else:
        repo = Repository(str(tmp_path / "target"), secret=SECRET)
    round_trip(tmp_path, repo)
    # Documents, ids and collection names the round trip wrote: none in the bucket.
    assert_opaque(repo, b"document static-1", b"document busy-", b"static-17", b"busy")
    assert json.loads(stored_objects(repo)[next(p for p in stored_objects(repo) if p.startswith("keys/"))])[
        "key_id"
    ] == key_id(SECRET)


def test_a_wrong_or_missing_key_is_refused_before_anything_is_read(tmp_path: Path, seeded_dir: Path) -> None:
    url = str(tmp_path / "target")
    create_snapshot(seeded_dir, Repository(url, secret=SECRET), NoHold(), chroma_version="1.5.9")
    with pytest.raises(EncryptionError, match=f"key \\(id {key_id(OTHER)}\\) is not one of"):
        Repository(url, secret=OTHER).complete()
    with pytest.raises(EncryptionError, match="is encrypted"):
        Repository(url).complete()
    target = tmp_path / "restored"
    assert not target.exists()
    # An unencrypted target cannot be turned into an encrypted one in place.
    plain = str(tmp_path / "plain")
    create_snapshot(seeded_dir, Repository(plain), NoHold(), chroma_version="1.5.9")
    with pytest.raises(EncryptionError, match="not encrypted"):
        Repository(plain, secret=SECRET).complete()


def test_key_rotation_keeps_the_data_and_retires_the_old_key(tmp_path: Path, seeded_dir: Path) -> None:
    url = str(tmp_path / "target")
    old = Repository(url, secret=SECRET)
    snap = create_snapshot(seeded_dir, old, NoHold(), chroma_version="1.5.9")
    before = {p: d for p, d in stored_objects(old).items() if not p.startswith("keys/")}
    new_id = old.add_key(OTHER)
    rotated = Repository(url, secret=OTHER)
    rotated.remove_key(key_id(SECRET))
    after = {p: d for p, d in stored_objects(rotated).items() if not p.startswith("keys/")}
    assert after == before  # nothing uploaded again
    result = restore(rotated, tmp_path / "restored", snapshot=snap.snapshot_id or "")
    assert result.outcome == "restored" and rotated.keyring is not None and rotated.keyring.key_id == new_id
    with pytest.raises(EncryptionError):
        Repository(url, secret=SECRET).complete()


def test_a_damaged_or_moved_object_is_refused(tmp_path: Path, seeded_dir: Path) -> None:
    repo = Repository(str(tmp_path / "target"), secret=SECRET)
    snap = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    files = sorted(p for p in (tmp_path / "target" / "chunks").rglob("*") if p.is_file())
    assert snap.uploaded_chunks == len(files) > 1
    a, b = files[0], files[1]
    a.write_bytes(b.read_bytes())  # an object moved into another's place
    target = tmp_path / "restored"
    with pytest.raises(Exception, match="corrupt or partial"):
        restore(repo, target)
    assert not target.exists()


def test_the_journal_is_encrypted_too(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"), secret=SECRET)
    spool = Spool(tmp_path / "journal", "w0")
    body = json.dumps({"ids": ["secret-id-1"], "documents": ["a very private document"]}).encode()
    spool.append(1000.5, "records", op="add", collection="c1", body=body)
    shipper = Shipper(
        tmp_path / "journal",
        Timeline(repo),
        JournalMetrics(__import__("prometheus_client").CollectorRegistry(), 5.0),
        request_base=lambda: None,
        last_cut=lambda: None,
        clock=lambda: 1002.0,
    )
    shipper.head.started = 1000.0
    shipper.cycle()
    assert_opaque(repo, b"a very private document", b"secret-id-1")
    (head,) = Timeline(repo).epochs()
    assert [e.json_body()["ids"] for e in Timeline(repo).read(head, 0, 2000)] == [["secret-id-1"]]


def test_a_binary_key_file_opens_the_repository_as_its_bytes(tmp_path: Path, seeded_dir: Path) -> None:
    """A Kubernetes Secret may hold any bytes: the key is read as they are, not as text."""
    from chromactl.backup.repository.repository import repository_of
    from chromactl.config import BackupSettings, EncryptionSettings

    raw = bytes(range(256))[128:160] + b"\xff\xfe"  # not UTF-8
    key = tmp_path / "key"
    key.write_bytes(raw + b"\n")
    url = str(tmp_path / "target")
    create_snapshot(seeded_dir, Repository(url, secret=raw), NoHold(), chroma_version="1.5.9")
    backup = BackupSettings(target=url, encryption=EncryptionSettings(key_file=key))
    repo = repository_of(backup)
    assert repo.keyring is not None and repo.keyring.key_id == key_id(raw)
    assert len(repo.complete()) == 1
