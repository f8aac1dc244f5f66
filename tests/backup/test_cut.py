"""The consistent cut: changes that land between the first pass and the hold (chunks
rewritten, files grown, shrunk, created, deleted, SQLite commits) are all in the
snapshot, byte for byte, and only the changed chunks are rewritten."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from chromactl.backup import Repository, create_snapshot, restore
from chromactl.backup.progress import NullProgress
from chromactl.backup.repository.chunks import CHUNK, FrameCompressor
from chromactl.backup.repository.chunkstore import ChunkStore
from chromactl.backup.snapshot import cut
from chromactl.backup.snapshot.create import SnapshotError
from chromactl.backup.snapshot.cut import Baseline
from chromactl.backup.snapshot.files import FileState, check_sqlite

from .helpers import chunk_object

MiB = CHUNK


class MutatingHold:
    """A write hold that runs ``mutate`` just before it is granted: the writes that
    landed after the first pass read the files."""

    def __init__(self, mutate: Callable[[], None]) -> None:
        self.mutate = mutate
        self.waited_s = 0.0
        self.entered = 0

    def __enter__(self) -> MutatingHold:
        self.mutate()
        self.entered += 1
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def make_dir(root: Path) -> Path:
    data = root / "data"
    seg = data / "seg-a"
    seg.mkdir(parents=True)
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(3000),) for _ in range(2000)])
    db.commit()
    db.close()
    (seg / "data_level0.bin").write_bytes(os.urandom(5 * MiB + 123))
    (seg / "grows.bin").write_bytes(os.urandom(2 * MiB))
    (seg / "shrinks.bin").write_bytes(os.urandom(3 * MiB + 7))
    (seg / "goes.bin").write_bytes(b"deleted before the cut")
    (seg / "same.bin").write_bytes(os.urandom(MiB))
    old = 1_000_000_000  # an old mtime: unchanged files are trusted by their stat
    for p in seg.iterdir():
        os.utime(p, (old, old))
    return data


def tree(path: Path) -> dict[str, str]:
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".chromactl")
    }


def test_changes_between_first_pass_and_hold_are_in_the_snapshot(tmp_path: Path) -> None:
    data = make_dir(tmp_path)
    seg = data / "seg-a"

    def writes() -> None:
        with open(seg / "data_level0.bin", "r+b") as fh:  # one chunk in the middle
            fh.seek(2 * MiB + 10)
            fh.write(b"X" * 100)
        with open(seg / "grows.bin", "ab") as fh:
            fh.write(os.urandom(MiB + 5))
        with open(seg / "shrinks.bin", "r+b") as fh:
            fh.truncate(MiB + 3)
        (seg / "goes.bin").unlink()
        (seg / "new.bin").write_bytes(os.urandom(MiB // 2))
        db = sqlite3.connect(data / "chroma.sqlite3")
        db.execute("UPDATE t SET v = ? WHERE id = 1000", (b"changed" * 100,))
        db.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(3000),) for _ in range(300)])
        db.commit()
        db.close()

    repo = Repository(str(tmp_path / "repo"))
    hold = MutatingHold(writes)
    result = create_snapshot(data, repo, hold, chroma_version="1.5.9")
    assert hold.entered == 1
    live = tree(data)
    assert restore(repo, tmp_path / "restored").outcome == "restored"
    assert tree(tmp_path / "restored") == live
    manifest = repo.resolve(str(result.snapshot_id))
    assert "seg-a/goes.bin" not in {f.path for f in manifest.files}
    restored = sqlite3.connect(tmp_path / "restored" / "chroma.sqlite3")
    assert restored.execute("SELECT count(*) FROM t").fetchone()[0] == 2300
    assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # only what changed was rewritten in the hold: not the unchanged chunks of the
    # 5 MiB file, not same.bin, and far less than the data directory
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    assert result.recopied_files == 5  # sqlite, data_level0, grows, shrinks, new
    assert result.recopied_bytes < total / 2


def test_a_failed_quick_check_fails_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dir(tmp_path)
    monkeypatch.setattr("chromactl.backup.snapshot.create.check_sqlite", lambda p: "*** page 7: corrupt")
    repo = Repository(str(tmp_path / "repo"))
    with pytest.raises(SnapshotError, match="quick_check"):
        create_snapshot(data, repo, MutatingHold(lambda: None), chroma_version="1.5.9")
    assert repo.snapshots() == []


def test_a_stray_writer_mid_transaction_is_not_torn(tmp_path: Path) -> None:
    """A stray writer (not behind the gateway) in the middle of a transaction: the cut
    holds the committed state under SQLite's SHARED lock (the whole transaction or
    none of it), and the writer's commit goes through after."""
    import threading
    import time

    data = make_dir(tmp_path)
    committer: list[threading.Thread] = []
    stray = sqlite3.connect(data / "chroma.sqlite3", check_same_thread=False, isolation_level=None)

    def writes() -> None:
        stray.execute("BEGIN IMMEDIATE")
        stray.executemany("INSERT INTO t (v) VALUES (?)", [(os.urandom(3000),) for _ in range(50)])
        stray.execute("PRAGMA cache_spill = 0")

        def commit_later() -> None:
            time.sleep(0.3)
            stray.execute("COMMIT")

        committer.append(threading.Thread(target=commit_later))
        committer[0].start()

    repo = Repository(str(tmp_path / "repo"))
    create_snapshot(data, repo, MutatingHold(writes), chroma_version="1.5.9")
    committer[0].join(timeout=30)
    assert stray.execute("SELECT count(*) FROM t").fetchone()[0] == 2050  # it committed
    stray.close()
    restore(repo, tmp_path / "restored")
    restored = sqlite3.connect(tmp_path / "restored" / "chroma.sqlite3")
    assert restored.execute("SELECT count(*) FROM t").fetchone()[0] in (2000, 2050)
    assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unchanged_chunks_are_not_compressed_or_uploaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dir(tmp_path)
    seg = data / "seg-a"
    compressed: list[int] = []
    real = FrameCompressor.compress

    def counting(self: FrameCompressor, chunk: bytes) -> bytes:
        compressed.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(FrameCompressor, "compress", counting)

    def writes() -> None:
        with open(seg / "data_level0.bin", "r+b") as fh:
            fh.seek(2 * MiB + 10)
            fh.write(b"Y" * 100)
        db = sqlite3.connect(data / "chroma.sqlite3")
        db.execute("UPDATE t SET v = ? WHERE id = 1500", (b"changed" * 100,))
        db.commit()
        db.close()

    repo = Repository(str(tmp_path / "repo"))
    first_pass = sum(-(-p.stat().st_size // CHUNK) for p in data.rglob("*") if p.is_file())
    result = create_snapshot(data, repo, MutatingHold(writes), chroma_version="1.5.9")
    # every chunk is compressed and uploaded once (SQLite's after the cut, from its staged
    # copy); rebuilding data_level0.bin compresses and uploads only its one changed chunk
    assert len(compressed) == first_pass + 1 == result.uploaded_chunks, (first_pass, len(compressed))
    # and every chunk is exactly what compressing the final content afresh gives
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    manifest = repo.read_manifest(str(result.snapshot_id))
    live = {"chroma.sqlite3": None, "seg-a/data_level0.bin": seg / "data_level0.bin"}
    restore(repo, tmp_path / "restored")
    for rel, path in live.items():
        content = (path or tmp_path / "restored" / rel).read_bytes()
        entry = next(f for f in manifest.files if f.path == rel)
        assert entry.chunks is not None and len(entry.chunks) == -(-len(content) // CHUNK)
        for i, chunk in enumerate(entry.chunks):
            piece = content[i * CHUNK : (i + 1) * CHUNK]
            assert chunk == hashlib.sha256(piece).hexdigest(), (rel, i)
            assert chunk_object(repo, chunk).read_bytes() == cctx.compress(piece), (rel, i)


class _WriteAfterTheCut(NullProgress):
    """Overwrites the first chunk of a file once the cut is done (as the database's upload
    starts): writes after the hold must not reach the snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def phase(self, description: str, total_bytes: int) -> None:
        if description.startswith("upload (database)"):
            with open(self.path, "r+b") as fh:
                fh.write(b"after the cut" * 100)


@pytest.mark.parametrize("written_after_the_cut", [False, True])
def test_rebuilt_files_read_unchanged_chunks_from_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_after_the_cut: bool
) -> None:
    """A file the cut found changed gets its unchanged chunks from the data directory while
    they still hash to their first-pass names, from the chunk store otherwise."""
    data = make_dir(tmp_path)
    level0 = data / "seg-a" / "data_level0.bin"
    original = level0.read_bytes()

    def writes() -> None:
        with open(level0, "r+b") as fh:
            fh.seek(2 * MiB + 10)
            fh.write(b"Y" * 100)

    downloads: list[str] = []
    real = ChunkStore.read
    monkeypatch.setattr(ChunkStore, "read", lambda self, c: (downloads.append(c), real(self, c))[1])
    repo = Repository(str(tmp_path / "repo"))
    progress = _WriteAfterTheCut(level0) if written_after_the_cut else None
    result = create_snapshot(data, repo, MutatingHold(writes), chroma_version="1.5.9", progress=progress)
    entry = next(
        f for f in repo.read_manifest(str(result.snapshot_id)).files if f.path == "seg-a/data_level0.bin"
    )
    assert entry.chunks is not None
    # only the first chunk changed after the cut: it alone comes from the store
    assert downloads == ([entry.chunks[0]] if written_after_the_cut else [])
    restore(repo, tmp_path / "restored")
    got = (tmp_path / "restored" / "seg-a" / "data_level0.bin").read_bytes()
    at_cut = bytearray(original)
    at_cut[2 * MiB + 10 : 2 * MiB + 110] = b"Y" * 100
    assert got == bytes(at_cut)  # the content at the cut, not what was written after it


def test_quick_check_finds_a_torn_copy(tmp_path: Path) -> None:
    data = make_dir(tmp_path)
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes((data / "chroma.sqlite3").read_bytes())
    assert check_sqlite(copy) == "ok"
    page = sqlite3.connect(copy).execute("PRAGMA page_size").fetchone()[0]
    with open(copy, "r+b") as fh:  # b-tree page headers overwritten, as a torn copy would
        for n in (2, 5, 9):
            fh.seek(page * n)
            fh.write(b"\x0d\x00\x00\xff\xff\x00\x00\x00")
    assert check_sqlite(copy) != "ok"


def test_catch_up_reads_only_a_database_written_since_it_was_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dir(tmp_path)
    db = data / "chroma.sqlite3"
    old = 1_000_000_000
    os.utime(db, (old, old))
    staged = tmp_path / "staged.sqlite3"
    staged.write_bytes(db.read_bytes())
    st = db.stat()
    base = Baseline(FileState.of(st), time.time_ns(), st.st_size, [])
    reads: list[int] = []
    real = cut.diff_file
    monkeypatch.setattr(cut, "diff_file", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert cut.catch_up(db, staged, base) is base and reads == []
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO t (v) VALUES (x'00')")
    conn.commit()
    conn.close()
    after = cut.catch_up(db, staged, base)
    assert reads == [1] and after is not base and staged.read_bytes() == db.read_bytes()


# Generations: Chroma rewrites a vector segment's files only when it persists it, and then
# records the segment's new max_seq_id. What was caught up before the hold, with the same
# generation and stat inside it, is not read again in the hold.


def make_chroma_dir(root: Path) -> Path:
    data = make_dir(root)
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("CREATE TABLE segments (id TEXT PRIMARY KEY, scope TEXT, collection TEXT)")
    db.execute("CREATE TABLE max_seq_id (segment_id TEXT PRIMARY KEY, seq_id INTEGER)")
    db.execute("INSERT INTO segments VALUES ('seg-a', 'VECTOR', 'c1'), ('seg-m', 'METADATA', 'c1')")
    db.execute("INSERT INTO max_seq_id VALUES ('seg-a', 1000), ('seg-m', 1050)")
    db.commit()
    db.close()
    return data


def persist(data: Path, seq: int) -> None:
    """What a persist of segment seg-a does: rewrite scattered parts of its files, then
    record the new position."""
    with open(data / "seg-a" / "data_level0.bin", "r+b") as fh:
        for offset in (10, 2 * MiB + 5, 4 * MiB + 7):
            fh.seek(offset)
            fh.write(os.urandom(64))
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("UPDATE max_seq_id SET seq_id = ? WHERE segment_id = 'seg-a'", (seq,))
    db.commit()
    db.close()


@pytest.fixture
def rehold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give back any hold that finds a persisted segment; do not wait long for the next."""
    monkeypatch.setattr(cut, "REHOLD_MIN_BYTES", 0)
    monkeypatch.setattr(cut, "PERSIST_WAIT_S", 0.05)


def snapshot_and_restore(tmp_path: Path, data: Path, hold: MutatingHold) -> dict[str, float]:
    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(data, repo, hold, chroma_version="1.5.9")
    live = tree(data)
    assert restore(repo, tmp_path / "restored").outcome == "restored"
    assert tree(tmp_path / "restored") == live
    return {**result.phases, "recopied_bytes": float(result.recopied_bytes)}


def test_a_segment_persisted_before_the_catch_up_is_not_read_in_the_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rehold: None
) -> None:
    from chromactl.backup.snapshot import create as snapshot

    data = make_chroma_dir(tmp_path)
    real = snapshot.catch_up_files
    persisted: list[int] = []

    def persist_then_catch_up(*args: object) -> int:
        if not persisted:
            persist(data, 2000)  # after the first pass read the files
            persisted.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "catch_up_files", persist_then_catch_up)
    phases = snapshot_and_restore(tmp_path, data, MutatingHold(lambda: None))
    assert phases["hold_attempts"] == 1
    assert phases["catch_up_bytes"] >= (data / "seg-a" / "data_level0.bin").stat().st_size
    # inside the hold only chroma.sqlite3 (written just before) was compared
    assert phases["hold_checked_bytes"] == (data / "chroma.sqlite3").stat().st_size


def test_a_hold_that_finds_a_segment_persisted_is_given_back_and_taken_again(
    tmp_path: Path, rehold: None
) -> None:
    data = make_chroma_dir(tmp_path)
    seqs = iter([2000])

    def persist_once() -> None:  # a persist lands between the catch-up and the first hold
        for seq in seqs:
            persist(data, seq)

    hold = MutatingHold(persist_once)
    phases = snapshot_and_restore(tmp_path, data, hold)
    assert hold.entered == 2 and phases["hold_attempts"] == 2
    assert phases["hold_given_back_s"] > 0
    assert phases["hold_checked_bytes"] == (data / "chroma.sqlite3").stat().st_size
    assert phases["recopied_bytes"] == 0  # seg-a was caught up again before the second hold


def test_a_segment_that_persists_before_every_hold_is_compared_in_the_last(
    tmp_path: Path, rehold: None
) -> None:
    data = make_chroma_dir(tmp_path)
    seqs = iter(range(2000, 10**6, 1000))
    hold = MutatingHold(lambda: persist(data, next(seqs)))
    phases = snapshot_and_restore(tmp_path, data, hold)
    assert hold.entered == cut.HOLD_ATTEMPTS == phases["hold_attempts"]
    level0 = (data / "seg-a" / "data_level0.bin").stat().st_size
    assert phases["hold_checked_bytes"] >= level0
    # the three chunks the last persist wrote, and the SQLite pages of its commit
    assert 3 * MiB <= phases["recopied_bytes"] <= 5 * MiB


def test_a_file_written_without_a_new_generation_is_still_compared(tmp_path: Path, rehold: None) -> None:
    """The generation alone does not make a file trusted: its stat must be the same too."""
    data = make_chroma_dir(tmp_path)

    def write_without_persisting() -> None:
        with open(data / "seg-a" / "data_level0.bin", "r+b") as fh:
            fh.seek(3 * MiB)
            fh.write(b"not recorded in SQLite")

    phases = snapshot_and_restore(tmp_path, data, MutatingHold(write_without_persisting))
    assert phases["hold_attempts"] == 1 and phases["recopied_bytes"] == MiB


def test_a_0x_directory_without_generations_is_compared_as_before(tmp_path: Path, rehold: None) -> None:
    """Chroma 0.x wrote max_seq_id as 8 big-endian bytes and keeps the vector segment's
    position in its pickle: no generation, every changed file compared in the hold."""
    data = make_chroma_dir(tmp_path)
    db = sqlite3.connect(data / "chroma.sqlite3")
    db.execute("UPDATE max_seq_id SET seq_id = ?", ((1000).to_bytes(8, "big"),))
    db.commit()
    db.close()
    assert cut.read_generations(data / "chroma.sqlite3") == {}
    hold = MutatingHold(lambda: persist_level0(data))
    phases = snapshot_and_restore(tmp_path, data, hold)
    assert hold.entered == 1 and phases["hold_checked_bytes"] >= 5 * MiB


def persist_level0(data: Path) -> None:
    with open(data / "seg-a" / "data_level0.bin", "r+b") as fh:
        fh.seek(MiB)
        fh.write(os.urandom(64))


def test_a_catch_up_cut_short_by_a_shrinking_file_leaves_no_stale_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up copied chunk 0's new content, then the file read short: if chunk 0 goes
    back to its first-pass content before the hold, the snapshot must hold that content,
    not the one the catch-up copied."""
    from chromactl.backup.snapshot import create as snapshot

    data = make_dir(tmp_path)
    level0 = data / "seg-a" / "data_level0.bin"
    original = level0.read_bytes()[:MiB]
    real_catch_up, real_read = snapshot.catch_up_files, cut._Source.read
    calls: list[int] = []

    def short_read(self: cut._Source, offset: int, n: int) -> bytes | memoryview:
        if offset == 2 * MiB:
            return b"short"
        return real_read(self, offset, n)

    def catch_up_cut_short(*args: object) -> int:
        calls.append(1)
        if len(calls) > 1:
            return real_catch_up(*args)  # type: ignore[arg-type]
        with open(level0, "r+b") as fh:
            fh.write(b"Y" * MiB)  # chunk 0 changes after the first pass
        with monkeypatch.context() as m:
            m.setattr(cut._Source, "read", short_read)
            return real_catch_up(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "catch_up_files", catch_up_cut_short)

    def back_to_original() -> None:
        with open(level0, "r+b") as fh:
            fh.write(original)

    snapshot_and_restore(tmp_path, data, MutatingHold(back_to_original))
    assert calls


def test_a_file_caught_up_then_deleted_before_the_hold_is_not_in_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary file (a persist's pickle before its rename) seen by the catch-up and
    gone at the cut: not uploaded, not in the manifest."""
    from chromactl.backup.snapshot import create as snapshot

    data = make_dir(tmp_path)
    temp = data / "seg-a" / ".tmp-index_metadata"
    real = snapshot.catch_up_files

    written: list[bytes] = []

    def with_a_temporary_file(*args: object) -> int:
        written.append(os.urandom(MiB + 1))
        temp.write_bytes(written[-1])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "catch_up_files", with_a_temporary_file)
    repo = Repository(str(tmp_path / "repo"))
    result = create_snapshot(data, repo, MutatingHold(temp.unlink), chroma_version="1.5.9")
    manifest = repo.resolve(str(result.snapshot_id))
    assert "seg-a/.tmp-index_metadata" not in {f.path for f in manifest.files}
    its_chunks = {hashlib.sha256(w[i : i + MiB]).hexdigest() for w in written for i in (0, MiB)}
    assert written and not its_chunks & set(ChunkStore(repo).listing())  # never uploaded
    restore(repo, tmp_path / "restored")
    assert tree(tmp_path / "restored") == tree(data)
