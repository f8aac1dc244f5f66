"""The snapshot repository: what a backup target holds, over any store of :mod:`chromactl.storage`.

Layout under the target URL::

    <snapshot-id>/files/<relative path>.zst   every file, zstd-compressed
    <snapshot-id>/manifest.json              written last; no manifest = incomplete
    <snapshot-id>/lease.json                 while the backup writing it runs (see .lease)
    config.json                              format 3: how chunks are named (see .repoconfig)
    chunks/<2 hex>/<sha256>                  format 3: each chunk once (see .chunkstore)
    locks/<id>.json                          format 3: shared and exclusive locks (see .locks)
    keys/<id>.json                           the data key, wrapped by each secret (see .crypto)

Formats 1 and 2 kept every file of a snapshot in ``<snapshot-id>/files/<path>.zst``; they are
still read. The repository does repository work only (its config, keys, locks, leases,
snapshots and their objects); reaching the target, retries and credentials are the store's.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TypeVar

from chromactl.backup.repository.config import CONFIG_NAME, RepoConfig
from chromactl.backup.repository.crypto import KEYS_DIR, EncryptionError, Keyring, key_id, unwrap, wrap
from chromactl.backup.repository.lease import LEASE_NAME, Lease
from chromactl.backup.repository.locks import LOCKS_DIR, Lock
from chromactl.backup.repository.manifest import MANIFEST_NAME, Manifest, ManifestError
from chromactl.config import BackupSettings, TargetSettings
from chromactl.secrets import read_secret_bytes
from chromactl.storage import (
    Location,
    ObjectStore,
    RetryPolicy,
    StoreError,
    open_store,
    redact_url,
    without_retries,
)

SNAPSHOT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
T = TypeVar("T")
#: The shortest secret a repository is encrypted with.
MIN_SECRET_BYTES = 16


class RepositoryError(StoreError):
    """The target holds no such snapshot, or what it holds is not a repository chromactl reads."""


def new_snapshot_id(now: datetime | None = None) -> str:
    """UTC time to the second, then the millisecond as 3 hex digits and 3 random ones, so that
    ids sort in creation order even for snapshots taken within the same second."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{now.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


def snapshot_time(snapshot_id: str) -> datetime:
    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def encryption_secret(backup: BackupSettings) -> bytes | None:
    """The secret that opens the repositories of ``backup`` (None: not encrypted); its bytes
    as they are, for a key may be binary."""
    key = backup.encryption
    if key.key_file is None and not key.key_env:
        return None
    return read_secret_bytes(
        key.key_file,
        key.key_env,
        what="the backup encryption key (backup.encryption)",
        min_length=MIN_SECRET_BYTES,
    )


def location_of(target: TargetSettings, backup: BackupSettings, url: str | None = None) -> Location:
    """Where ``target`` (the primary target, or a copy of ``backup.copies``) is, with its own
    endpoint, options and credentials, and the timeouts of ``backup``."""
    return Location(
        url or target.target,
        endpoint_url=target.endpoint_url,
        region=target.region,
        options=dict(target.storage_options),
        credentials_dir=target.credentials_dir,
        io_timeout_s=backup.io_timeout_s,
    )


def store_of(
    backup: BackupSettings, target: TargetSettings | None = None, url: str | None = None
) -> ObjectStore:
    """The store of the primary target (``url``, from ``--repo`` or an export's ``--dest``,
    overrides its URL), or of ``target``, one of its copies, with the retries of ``backup``."""
    retry = RetryPolicy(backup.retry_attempts, backup.retry_backoff_s, backup.op_timeout_s)
    return open_store(location_of(target or backup, backup, url), retry=retry)


def repository_of(
    backup: BackupSettings, target: TargetSettings | None = None, url: str | None = None
) -> Repository:
    """The repository of :func:`store_of`, opened with the encryption secret of ``backup``: the
    one way a repository is built from settings."""
    return Repository(store_of(backup, target, url), secret=encryption_secret(backup))


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    complete: bool
    manifest: Manifest | None

    @property
    def created(self) -> datetime:
        return snapshot_time(self.snapshot_id)


class Repository:
    """Snapshots in one store."""

    def __init__(self, store: ObjectStore | str, *, secret: bytes | None = None) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        self.url = self.store.url
        self._secret = secret
        self._keyring: Keyring | None = None
        self._keyring_open = False
        self._config: RepoConfig | None = None

    @property
    def display(self) -> str:
        """The target's URL fit for messages."""
        return redact_url(self.url)

    @property
    def is_local(self) -> bool:
        return self.store.is_local

    # -- encryption (see .crypto) ------------------------------------------------------
    @property
    def keyring(self) -> Keyring | None:
        """The data key, opened on first use (a restore that has nothing to do never reaches
        the target)."""
        if not self._keyring_open:
            self._keyring = self._open_keyring(self._secret)
            self._keyring_open = True
        return self._keyring

    def _open_keyring(self, secret: bytes | None) -> Keyring | None:
        """The data key this secret unwraps; a new one for an empty target; None for a target
        that is not encrypted (and no secret)."""
        found = [
            n[:-5]
            for n in self.store.list(KEYS_DIR, what="list the repository's keys")
            if n.endswith(".json")
        ]
        if secret is None:
            if found:
                raise EncryptionError(
                    f"{self.display} is encrypted (keys {', '.join(found)}): set "
                    "backup.encryption.key_file (or key_env) to its secret"
                )
            return None
        kid = key_id(secret)
        if kid in found:
            data = self.store.load(f"{KEYS_DIR}/{kid}.json", what="read the data key")
            if data is None:
                raise EncryptionError(f"key {kid} of {self.display} disappeared while it was read")
            return Keyring(unwrap(secret, data), kid)
        if found:
            raise EncryptionError(
                f"the backup encryption key (id {kid}) is not one of {self.display}'s keys "
                f"({', '.join(found)}): nothing was read; pass the secret this repository was encrypted with"
            )
        if self.snapshot_ids():
            raise EncryptionError(
                f"{self.display} holds snapshots that are not encrypted: encrypted backups "
                "need a target of their own (a new prefix)"
            )
        data_key = os.urandom(32)
        self.store.save(f"{KEYS_DIR}/{kid}.json", wrap(secret, data_key), what="write the data key")
        return Keyring(data_key, kid)

    def add_key(self, new_secret: bytes) -> str:
        """Wrap this repository's data key under another secret too (key rotation); its id."""
        if self.keyring is None:
            raise EncryptionError(f"{self.display} is not encrypted: there is no key to rotate")
        kid = key_id(new_secret)
        self.store.save(
            f"{KEYS_DIR}/{kid}.json", wrap(new_secret, self.keyring.data_key), what="write the data key"
        )
        return kid

    def remove_key(self, kid: str) -> None:
        """Drop one wrapping of the data key (the old secret of a rotation)."""
        if self.keyring is not None and kid == self.keyring.key_id:
            raise EncryptionError(
                "the key in use cannot be removed: open the repository with the new key first"
            )
        self.store.remove([f"{KEYS_DIR}/{kid}.json"], what=f"remove key {kid}")

    def stored(self, name: str) -> str:
        """The name an object of a snapshot has in the bucket."""
        return self.keyring.stored_name(name) if self.keyring is not None else name

    def seal(self, data: bytes, name: str) -> bytes:
        return self.keyring.seal(data, name) if self.keyring is not None else data

    def unseal(self, data: bytes, name: str) -> bytes:
        return self.keyring.open(data, name) if self.keyring is not None else data

    # -- sealed objects by their logical name (keys, chunks, journal, drill reports) ----
    def save(self, name: str, data: bytes, *, what: str) -> None:
        """Write one object whole, sealed under its logical ``name`` when encrypted."""
        self.store.save(name, self.seal(data, name), what=what)

    def load(self, name: str, *, what: str) -> bytes | None:
        """One object by its logical name, opened when encrypted; None when it is not there."""
        data = self.store.load(name, what=what)
        return None if data is None else self.unseal(data, name)

    # -- repository config (format 3, see .repoconfig) --------------------------------
    def config(self) -> RepoConfig | None:
        """The repository's ``config.json`` (checked: a newer format is refused); None for a
        repository that has only format 1 and 2 snapshots, or nothing yet."""
        if self._config is None:
            data = self.store.load(CONFIG_NAME, what="read the repository config")
            if data is not None:
                self._config = RepoConfig.from_json(data, self.display)
        return self._config

    def ensure_config(self) -> RepoConfig:
        """The config, written first if the repository has none (the first format-3 write)."""
        config = self.config()
        if config is None:
            self.store.save(CONFIG_NAME, RepoConfig().to_json(), what="write the repository config")
            config = self._config = RepoConfig()
        return config

    # -- locks (see .locks) --------------------------------------------------------------
    def write_lock(self, lock_id: str, lock: Lock) -> None:
        self.store.save(f"{LOCKS_DIR}/{lock_id}.json", lock.to_json(), what="write a lock")

    def read_locks(self) -> dict[str, Lock | None]:
        """Every lock in the repository (None: unreadable); one removed meanwhile is left out."""
        out: dict[str, Lock | None] = {}
        for name in self.store.list(LOCKS_DIR, what="list locks"):
            if not name.endswith(".json") or name.startswith("."):
                continue
            data = self.store.load(f"{LOCKS_DIR}/{name}", what=f"read lock {name}")
            if data is not None:
                out[name[:-5]] = Lock.from_json(data)
        return out

    def delete_lock(self, lock_id: str) -> None:
        self.store.remove([f"{LOCKS_DIR}/{lock_id}.json"], what=f"remove lock {lock_id}")

    # -- snapshots -----------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        return [n for n in self.store.list(what="list snapshots") if SNAPSHOT_ID_RE.match(n)]

    def read_manifest(self, snapshot_id: str) -> Manifest:
        name = f"{snapshot_id}/{MANIFEST_NAME}"
        data = self.load(name, what=f"read the manifest of {snapshot_id}")
        if data is None:
            raise ManifestError(
                f"snapshot {snapshot_id} has no manifest: it is incomplete "
                "(interrupted backup) and cannot be restored"
            )
        return Manifest.from_json(data)

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first; incomplete ones have ``complete=False``."""
        self.config()  # a repository of a newer format is refused before anything is read
        out: list[SnapshotInfo] = []
        for sid in self.snapshot_ids():
            try:
                out.append(SnapshotInfo(sid, True, self.read_manifest(sid)))
            except ManifestError:
                out.append(SnapshotInfo(sid, False, None))
        return out

    def latest_complete(self) -> Manifest | None:
        """The newest complete snapshot's manifest, reading manifests from the newest id back."""
        self.config()
        for sid in reversed(self.snapshot_ids()):
            try:
                return self.read_manifest(sid)
            except ManifestError:
                continue
        return None

    def complete(self) -> list[SnapshotInfo]:
        return [s for s in self.snapshots() if s.complete]

    def resolve(self, ref: str = "latest") -> Manifest:
        """A complete snapshot by id or ``latest``."""
        if ref == "latest":
            done = self.complete()
            if not done:
                raise RepositoryError(f"no complete snapshot in {self.display}")
            manifest = done[-1].manifest
            assert manifest is not None
            return manifest
        if not SNAPSHOT_ID_RE.match(ref):
            raise RepositoryError(f"{ref!r} is not a snapshot id (like 20250101T120000Z-0a1b2c)", exit_code=2)
        self.config()
        if not self.store.exists(ref, what=f"look up {ref}"):
            raise RepositoryError(f"no snapshot {ref} in {self.display}")
        return self.read_manifest(ref)

    def write_manifest(self, manifest: Manifest) -> None:
        """Written last, atomically where the backend allows it."""
        self.save(
            f"{manifest.snapshot_id}/{MANIFEST_NAME}", manifest.to_json().encode(), what="write the manifest"
        )

    def delete(self, snapshot_id: str, *, retry: bool = True) -> None:
        """Remove a snapshot: the manifest first, so it is never half-listed."""
        if not SNAPSHOT_ID_RE.match(snapshot_id):
            raise RepositoryError(f"{snapshot_id!r} is not a snapshot id", exit_code=2)
        self.config()  # a repository of a newer format is not changed
        store = self.store if retry else without_retries(self.store)
        store.remove([f"{snapshot_id}/{MANIFEST_NAME}"], what=f"delete {snapshot_id}")
        store.remove_tree(snapshot_id, what=f"delete {snapshot_id}")

    # -- the objects of format 1 and 2 snapshots, streamed ------------------------------
    def read_object(self, snapshot_id: str, name: str, consume: Callable[[IO[bytes]], T], *, what: str) -> T:
        """Stream one object of a snapshot (opened when encrypted) into ``consume``."""
        logical = f"{snapshot_id}/{name}"

        def run(raw: IO[bytes]) -> T:
            if self.keyring is None:
                return consume(raw)
            with self.keyring.reader(raw, logical) as reader:
                return consume(reader)  # type: ignore[arg-type]

        try:
            return self.store.load_stream(f"{snapshot_id}/{self.stored(name)}", run, what=what)
        except FileNotFoundError:
            raise RepositoryError(
                f"snapshot {snapshot_id} is missing {name}: it is partial or damaged"
            ) from None

    def write_object(self, snapshot_id: str, name: str, produce: Callable[[IO[bytes]], T], *, what: str) -> T:
        """Stream one object of a snapshot (sealed when encrypted) from ``produce``."""
        logical = f"{snapshot_id}/{name}"

        def run(raw: IO[bytes]) -> T:
            if self.keyring is None:
                return produce(raw)
            with self.keyring.writer(raw, logical) as writer:
                return produce(writer)  # type: ignore[arg-type]

        return self.store.save_stream(f"{snapshot_id}/{self.stored(name)}", run, what=what)

    # -- leases of running backups (see .lease) ----------------------------------
    def write_lease(self, snapshot_id: str, lease: Lease) -> None:
        self.store.save(f"{snapshot_id}/{LEASE_NAME}", lease.to_json(), what="write the lease")

    def read_lease(self, snapshot_id: str) -> Lease | None:
        """The lease of a running backup, or ``None`` when there is none."""
        data = self.store.load(f"{snapshot_id}/{LEASE_NAME}", what=f"read the lease of {snapshot_id}")
        return None if data is None else Lease.from_json(data)

    def delete_lease(self, snapshot_id: str) -> None:
        self.store.remove([f"{snapshot_id}/{LEASE_NAME}"], what="remove the lease")
