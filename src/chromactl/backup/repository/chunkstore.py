"""The chunk store of a content-addressed (format 3) repository.

Every ``chunk_size`` (1 MiB) piece of every file is stored once, as one zstd frame, at
``chunks/<first 2 hex>/<SHA-256 of the uncompressed piece>``, and shared by every snapshot
whose files contain it; a manifest lists each file's chunks in order. On an encrypted target
the name is an HMAC of ``chunks/<sha256>`` under the data key (the same content gets the same
opaque name, so it is still stored once) and the frame is sealed with that logical name as
associated data (:mod:`.crypto`).

A backup lists the store once (under its shared lock, :mod:`.locks`) and uploads only the
chunks missing from it (:class:`ChunkUploader`); ``backup prune`` deletes chunks that no
complete manifest names, under the exclusive lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import zstandard

from chromactl.backup.repository.chunks import Copied, FrameCompressor, digest
from chromactl.backup.repository.crypto import EncryptionError
from chromactl.backup.repository.repository import Repository, RepositoryError

CHUNKS_DIR = "chunks"
#: A file's chunks in an earlier snapshot, in order: (xxh3-128 of the content, hex; SHA-256).
Earlier = list[tuple[str, str]]


class ChunkError(RepositoryError):
    """A chunk is missing from the store or does not match its name."""

    def __init__(self, chunk: str, problem: str) -> None:
        super().__init__(f"chunk {chunk} {problem}")
        self.chunk = chunk
        self.problem = problem


def chunk_key(repo: Repository, chunk: str) -> str:
    """The name a chunk's object has in the bucket: its hash, or an opaque HMAC of it."""
    keyring = repo.keyring
    return chunk if keyring is None else keyring.stored_name(f"{CHUNKS_DIR}/{chunk}").split("/", 1)[1]


@dataclass(frozen=True)
class ChunkStore:
    """The ``chunks/`` folder of one repository."""

    repo: Repository

    def key(self, chunk: str) -> str:
        return chunk_key(self.repo, chunk)

    def object_key(self, key: str) -> str:
        """Where a chunk of that key is in the store."""
        return f"{CHUNKS_DIR}/{key[:2]}/{key}"

    def listing(self) -> dict[str, int]:
        """Every chunk object (by key, see :meth:`key`) with its size in bytes: one listing."""
        found = self.repo.store.walk(CHUNKS_DIR, what="list the chunk store")
        return {name.rsplit("/", 1)[-1]: size for name, size in found.items()}

    def put(self, chunk: str, frame: bytes) -> int:
        """Store one chunk's frame (sealed on an encrypted target); the bytes stored."""
        data = self.repo.seal(frame, f"{CHUNKS_DIR}/{chunk}")
        self.repo.store.save(self.object_key(self.key(chunk)), data, what=f"upload chunk {chunk}")
        return len(data)

    def frame(self, chunk: str) -> bytes:
        """One chunk's zstd frame as stored (opened on an encrypted target).

        Raises:
            ChunkError: it is missing or does not decrypt.
        """
        data = self.repo.store.load(self.object_key(self.key(chunk)), what=f"download chunk {chunk}")
        if data is None:
            raise ChunkError(chunk, "is missing from the chunk store")
        try:
            return self.repo.unseal(data, f"{CHUNKS_DIR}/{chunk}")
        except EncryptionError as exc:
            raise ChunkError(chunk, f"is damaged: {exc}") from None

    def read(self, chunk: str) -> bytes:
        """One chunk's content, checked against its name.

        Raises:
            ChunkError: it is missing, damaged, or its content does not hash to its name.
        """
        return decode(chunk, self.frame(chunk))

    def delete_keys(self, keys: list[str]) -> None:
        """Remove these chunks (one request per batch where the store deletes in bulk)."""
        self.repo.store.remove([self.object_key(k) for k in keys], what=f"remove {len(keys)} chunks")


def decode(chunk: str, frame: bytes) -> bytes:
    """The content of one chunk's frame, checked against its name."""
    try:
        content = zstandard.ZstdDecompressor().decompress(frame)
    except zstandard.ZstdError as exc:
        raise ChunkError(chunk, f"is damaged: cannot decompress: {exc}") from None
    if hashlib.sha256(content).hexdigest() != chunk:
        raise ChunkError(chunk, "is damaged: its content does not hash to its name")
    return content


class ChunkUploader:
    """Writes files into the chunk store: each chunk hashed, and compressed and uploaded only
    when the store (as listed once, plus what this uploader stored) lacks it.

    ``known``: key → stored size of the chunks already in the store. The uploaded bytes and
    chunks are counted in :attr:`uploaded_bytes`, :attr:`uploaded_chunks`."""

    def __init__(
        self,
        store: ChunkStore,
        frames: FrameCompressor,
        pool: ThreadPoolExecutor,
        window: int,
        known: dict[str, int],
    ) -> None:
        self.store = store
        self._frames = frames
        self._pool = pool
        self._window = max(2, window)
        self._lock = threading.Lock()
        self._known: dict[str, Future[int]] = {}
        self.add_known(known)
        self.uploaded_bytes = 0
        self.uploaded_chunks = 0
        self.reused_chunks = 0

    def add_known(self, known: dict[str, int]) -> None:
        """Chunks (key → stored size) the store holds: not uploaded again."""
        with self._lock:
            for key, size in known.items():
                if key not in self._known:
                    done: Future[int] = Future()
                    done.set_result(size)
                    self._known[key] = done

    def _store_one(self, chunk: bytes) -> tuple[str, Future[int]]:
        name = hashlib.sha256(chunk).hexdigest()
        key = self.store.key(name)
        with self._lock:
            earlier = self._known.get(key)
            if earlier is not None:
                self.reused_chunks += 1
                return name, earlier
            mine: Future[int] = Future()
            self._known[key] = mine
        try:
            size = self.store.put(name, self._frames.compress(chunk))
        except BaseException as exc:
            with self._lock:
                del self._known[key]
            mine.set_exception(exc)
            raise
        with self._lock:
            self.uploaded_bytes += size
            self.uploaded_chunks += 1
        mine.set_result(size)
        return name, mine

    def _reuse(self, chunk: str) -> Future[tuple[str, Future[int]]] | None:
        """An earlier snapshot's chunk the store holds, as the result of a store; else None."""
        with self._lock:
            size = self._known.get(self.store.key(chunk))
            if size is None:
                return None
            self.reused_chunks += 1
        done: Future[tuple[str, Future[int]]] = Future()
        done.set_result((chunk, size))
        return done

    def write(
        self,
        chunks: Iterable[bytes],
        on_chunk: Callable[[int], None] | None = None,
        earlier: Earlier | None = None,
    ) -> Copied:
        """Store ``chunks`` (one file, in order); their hashes and stored sizes in order.

        ``earlier``: the file's chunks in the previous snapshot. A chunk whose xxh3-128 digest
        is the one at the same place there (the test the consistent cut trusts) is that chunk:
        not even hashed with SHA-256, when the store holds it."""
        out = Copied()
        whole = hashlib.sha256()
        pending: deque[Future[tuple[str, Future[int]]]] = deque()
        stored: list[Future[int]] = []

        def drain_one() -> None:
            name, size = pending.popleft().result()
            out.hashes.append(name)
            stored.append(size)

        try:
            for i, chunk in enumerate(chunks):
                fast = digest(chunk)
                out.digests.append(fast)
                whole.update(chunk)
                out.size += len(chunk)
                same = earlier is not None and i < len(earlier) and earlier[i][0] == fast.hex()
                reused = self._reuse(earlier[i][1]) if same and earlier is not None else None
                pending.append(reused or self._pool.submit(self._store_one, chunk))
                if on_chunk is not None:
                    on_chunk(len(chunk))
                while len(pending) >= self._window:
                    drain_one()
            while pending:
                drain_one()
        finally:
            for fut in pending:
                fut.cancel()
        out.chunk_sizes = [s.result() for s in stored]  # another file's upload of the same chunk
        out.stored_size = sum(out.chunk_sizes)
        out.sha256 = whole.hexdigest()
        return out


def chunk_users(repo: Repository, chunks: Iterable[str]) -> dict[str, list[str]]:
    """Each of ``chunks`` → the complete snapshots (ids, oldest first) whose manifests name it."""
    users: dict[str, list[str]] = {c: [] for c in chunks}
    for snap in repo.complete():
        assert snap.manifest is not None
        for chunk in snap.manifest.chunk_hashes() & users.keys():
            users[chunk].append(snap.snapshot_id)
    return users


def describe_bad_chunks(repo: Repository, bad: dict[str, str]) -> list[str]:
    """One line per bad chunk (chunk → its problem): the chunk and every snapshot that needs it."""
    try:
        users = chunk_users(repo, bad)
    except Exception as exc:  # the chunk is still named
        return [
            f"chunk {c} {p} (the snapshots that need it could not be listed: {exc})"
            for c, p in sorted(bad.items())
        ]
    return [
        f"chunk {c} {p}; snapshots that need it: {', '.join(users[c]) or 'none complete'}"
        for c, p in sorted(bad.items())
    ]
