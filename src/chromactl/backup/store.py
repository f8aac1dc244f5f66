"""The snapshot repository: one fsspec code path for local paths, S3, GCS and Azure.

Layout under the target URL::

    <snapshot-id>/files/<relative path>.zst   every file, zstd-compressed
    <snapshot-id>/manifest.json              written last; no manifest = incomplete
    <snapshot-id>/lease.json                 while the backup writing it runs (see .lease)
    config.json                              format 3: how chunks are named (see .repoconfig)
    chunks/<2 hex>/<sha256>                  format 3: each chunk once (see .chunkstore)
    locks/<id>.json                          format 3: shared and exclusive locks (see .locks)

Formats 1 and 2 kept every file of a snapshot in ``<snapshot-id>/files/<path>.zst``; they are
still read.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from chromactl.config import BackupSettings
from chromactl.errors import ChromactlError

from .crypto import KEYS_DIR, EncryptionError, Keyring, key_id, read_secret, unwrap, wrap
from .lease import LEASE_NAME, Lease
from .locks import LOCKS_DIR, Lock
from .manifest import MANIFEST_NAME, Manifest, ManifestError
from .repoconfig import CONFIG_NAME, RepoConfig

SNAPSHOT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
log = logging.getLogger("chromactl.backup")
T = TypeVar("T")
#: Errors from object storage client libraries that are worth another attempt.
_TRANSIENT_MODULES = (
    "botocore",
    "aiobotocore",
    "aiohttp",
    "urllib3",
    "requests",
    "azure.core",
    "google.api_core",
    "google.auth.exceptions",
    "gcsfs",
    "fsspec",
)
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class RepositoryError(ChromactlError):
    """The target cannot be reached or holds no such snapshot."""


def new_snapshot_id(now: datetime | None = None) -> str:
    """UTC time to the second, then the millisecond as 3 hex digits and 3 random ones, so that
    ids sort in creation order even for snapshots taken within the same second."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{now.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


def snapshot_time(snapshot_id: str) -> datetime:
    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def load_credentials_dir(directory: Path | None) -> None:
    """Export each file of a mounted Secret as an environment variable.

    File names are variable names (``AWS_ACCESS_KEY_ID``...); values are never logged.
    Variables already set in the environment win.
    """
    if directory is None:
        return
    if not directory.is_dir():
        raise RepositoryError(f"credentials directory {directory} does not exist")
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", entry.name):
            continue
        os.environ.setdefault(entry.name, entry.read_text(encoding="utf-8").strip())


def storage_options(url: str, settings: BackupSettings) -> dict[str, Any]:
    """fsspec options for ``url`` from the (non-secret) settings."""
    options: dict[str, Any] = dict(settings.storage_options)
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme in ("s3", "s3a"):
        client_kwargs: dict[str, Any] = {}
        if settings.endpoint_url:
            options.setdefault("endpoint_url", settings.endpoint_url)
        if settings.region:
            client_kwargs["region_name"] = settings.region
        if client_kwargs:
            options.setdefault("client_kwargs", client_kwargs)
        # A chunk is read in one GET: s3fs would first ask for its size to split the read
        # (a second request per chunk, for objects of at most ~1 MiB).
        options.setdefault("max_concurrency", 1)
        # One request may take io_timeout_s; chromactl itself retries (RetryPolicy).
        options.setdefault(
            "config_kwargs",
            {
                "connect_timeout": settings.io_timeout_s,
                "read_timeout": settings.io_timeout_s,
                "retries": {"max_attempts": 1, "mode": "standard"},
            },
        )
    return options


class _Overdue(Exception):
    """An object storage call outlived the operation's time limit."""


def _within(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or :class:`_Overdue` once ``seconds`` pass. A connection the store black-holes
    can outlast the client's socket timeouts; the call is left behind on a daemon thread."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="object-storage-call", daemon=True).start()
    if not done.wait(max(seconds, 0.0)):
        raise _Overdue()
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one object storage operation: exponential backoff from ``backoff_s``
    (doubling, at most 30 s), at most ``attempts`` tries and ``time_limit_s`` in all."""

    attempts: int = 5
    backoff_s: float = 0.5
    time_limit_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: BackupSettings) -> RetryPolicy:
        return cls(settings.retry_attempts, settings.retry_backoff_s, settings.op_timeout_s)


def is_transient(exc: BaseException) -> bool:
    """Whether an object storage error may go away on its own (network, timeouts, 5xx)."""
    if isinstance(
        exc,
        ChromactlError
        | FileNotFoundError
        | PermissionError
        | IsADirectoryError
        | NotADirectoryError
        | FileExistsError
        | ValueError
        | TypeError,
    ):
        return False
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    return type(exc).__module__.startswith(_TRANSIENT_MODULES)


def redact_url(url: str) -> str:
    """A URL fit for logs: any ``user:password@`` part removed."""
    return re.sub(r"://[^/@]*@", "://", url)


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    complete: bool
    manifest: Manifest | None

    @property
    def created(self) -> datetime:
        return snapshot_time(self.snapshot_id)


class Repository:
    """Snapshots stored under one fsspec URL."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        secret: bytes | None = None,
    ) -> None:
        if not url:
            raise RepositoryError("no backup target: pass --to/--from or set backup.target")
        self.url = url
        self.options = dict(options or {})
        self.retry_policy = retry or RetryPolicy()
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise RepositoryError(f"cannot open target {redact_url(url)}: {exc}") from None
        self.root = root.rstrip("/")
        if hasattr(self.fs, "retries") and not self.is_local:
            self.fs.retries = 1  # s3fs's own retry loop; RetryPolicy decides
        self._secret = secret
        self._keyring: Keyring | None = None
        self._keyring_open = False
        self._config: RepoConfig | None = None

    @classmethod
    def from_settings(cls, settings: BackupSettings, url: str | None = None) -> Repository:
        load_credentials_dir(settings.credentials_dir)
        target = url or settings.target
        secret = read_secret(settings.encryption.key_file, settings.encryption.key_env)
        return cls(
            target,
            storage_options(target, settings),
            retry=RetryPolicy.from_settings(settings),
            secret=secret,
        )

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
        keys = self.path(KEYS_DIR)
        found = [n[:-5] for n in self.names(keys, "list the repository's keys") if n.endswith(".json")]
        if secret is None:
            if found:
                raise EncryptionError(
                    f"{redact_url(self.url)} is encrypted (keys {', '.join(found)}): set "
                    "backup.encryption.key_file (or key_env) to its secret"
                )
            return None
        kid = key_id(secret)
        if kid in found:
            data = self.retry("read the data key", lambda: self.fs.cat_file(f"{keys}/{kid}.json"))
            return Keyring(unwrap(secret, data), kid)
        if found:
            raise EncryptionError(
                f"the backup encryption key (id {kid}) is not one of {redact_url(self.url)}'s keys "
                f"({', '.join(found)}): nothing was read; pass the secret this repository was encrypted with"
            )
        if self.snapshot_ids():
            raise EncryptionError(
                f"{redact_url(self.url)} holds snapshots that are not encrypted: encrypted backups "
                "need a target of their own (a new prefix)"
            )
        data_key = os.urandom(32)
        self.put_object(f"{keys}/{kid}.json", wrap(secret, data_key), "write the data key")
        return Keyring(data_key, kid)

    def add_key(self, new_secret: bytes) -> str:
        """Wrap this repository's data key under another secret too (key rotation); its id."""
        if self.keyring is None:
            raise EncryptionError(f"{redact_url(self.url)} is not encrypted: there is no key to rotate")
        kid = key_id(new_secret)
        self.put_object(
            self.path(KEYS_DIR, f"{kid}.json"), wrap(new_secret, self.keyring.data_key), "write the data key"
        )
        return kid

    def remove_path(self, path: str, what: str) -> None:
        """Remove one object by its full path (one already gone is fine)."""

        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)

        self.retry(what, rm)

    def remove_key(self, kid: str) -> None:
        """Drop one wrapping of the data key (the old secret of a rotation)."""
        if self.keyring is not None and kid == self.keyring.key_id:
            raise EncryptionError(
                "the key in use cannot be removed: open the repository with the new key first"
            )
        self.remove_path(self.path(KEYS_DIR, f"{kid}.json"), f"remove key {kid}")

    def stored(self, name: str) -> str:
        """The name an object of a snapshot has in the bucket."""
        return self.keyring.stored_name(name) if self.keyring is not None else name

    def seal(self, data: bytes, path: str) -> bytes:
        return self.keyring.seal(data, path) if self.keyring is not None else data

    def unseal(self, data: bytes, path: str) -> bytes:
        return self.keyring.open(data, path) if self.keyring is not None else data

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one whole operation, safe to repeat) with the retry policy.

        Local targets are not retried: their errors (a full disk) do not pass by themselves.
        """
        if self.is_local:
            return fn()
        policy = self.retry_policy
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return _within(fn, policy.time_limit_s - (time.monotonic() - start))
            except _Overdue:
                raise RepositoryError(
                    f"object storage at {redact_url(self.url)} did not finish to {what} within "
                    f"backup.op_timeout_s={policy.time_limit_s:g}s (attempt {attempt}); the "
                    "connection stalled"
                ) from None
            except Exception as exc:
                elapsed = time.monotonic() - start
                delay = min(30.0, policy.backoff_s * 2 ** (attempt - 1))
                if not is_transient(exc):
                    raise
                if attempt >= policy.attempts or elapsed + delay >= policy.time_limit_s:
                    raise RepositoryError(
                        f"object storage at {redact_url(self.url)} failed to {what}: "
                        f"{type(exc).__name__}: {exc} (gave up after {attempt} attempts in "
                        f"{elapsed:.1f}s; limits: backup.retry_attempts={policy.attempts}, "
                        f"backup.op_timeout_s={policy.time_limit_s:g})"
                    ) from None
                log.warning(
                    "%s failed (%s: %s); retry %d in %.1fs", what, type(exc).__name__, exc, attempt, delay
                )
                time.sleep(delay)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def put_object(self, path: str, data: bytes, what: str) -> None:
        """Write one object whole (full path): on a local target through a temporary file
        renamed into place, so that a listing never shows it half-written."""
        if not self.is_local:
            self.retry(what, lambda: self.fs.pipe_file(path, data))
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{secrets.token_hex(4)}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def cat(self, path: str, what: str) -> bytes | None:
        """One object by its full path; None when it is not there."""

        def cat() -> bytes | None:
            try:
                return self.fs.cat_file(path)  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        return self.retry(what, cat)

    # -- repository config (format 3, see .repoconfig) --------------------------------
    def config(self) -> RepoConfig | None:
        """The repository's ``config.json`` (checked: a newer format is refused); None for a
        repository that has only format 1 and 2 snapshots, or nothing yet."""
        if self._config is None:
            data = self.cat(self.path(CONFIG_NAME), "read the repository config")
            if data is not None:
                self._config = RepoConfig.from_json(data, redact_url(self.url))
        return self._config

    def ensure_config(self) -> RepoConfig:
        """The config, written first if the repository has none (the first format-3 write)."""
        config = self.config()
        if config is None:
            self.put_object(self.path(CONFIG_NAME), RepoConfig().to_json(), "write the repository config")
            config = self._config = RepoConfig()
        return config

    # -- locks (see .locks) --------------------------------------------------------------
    def write_lock(self, lock_id: str, lock: Lock) -> None:
        self.put_object(self.path(LOCKS_DIR, f"{lock_id}.json"), lock.to_json(), "write a lock")

    def read_locks(self) -> dict[str, Lock | None]:
        """Every lock in the repository (None: unreadable); one removed meanwhile is left out."""
        out: dict[str, Lock | None] = {}
        for name in self.names(self.path(LOCKS_DIR), "list locks"):
            if not name.endswith(".json") or name.startswith("."):
                continue
            data = self.cat(self.path(LOCKS_DIR, name), f"read lock {name}")
            if data is not None:
                out[name[:-5]] = Lock.from_json(data)
        return out

    def delete_lock(self, lock_id: str) -> None:
        self.remove_path(self.path(LOCKS_DIR, f"{lock_id}.json"), f"remove lock {lock_id}")

    def forget_listings(self, path: str) -> None:
        """Drop the client's cached listings of ``path`` and everything under it (s3fs keeps
        them, and would then answer that an object uploaded since by another process is not
        there)."""
        self.fs.invalidate_cache(path)
        cache = getattr(self.fs, "dircache", None)
        if cache is not None:
            stripped = self.fs._strip_protocol(path).rstrip("/")
            for key in [k for k in list(cache) if str(k).startswith(stripped + "/")]:
                cache.pop(key, None)

    # -- listing -----------------------------------------------------------------
    def names(self, path: str, what: str) -> list[str]:
        """The names in the folder ``path`` (full path) as the target lists them now, sorted;
        none when the folder is not there."""

        def listing() -> list[str]:
            try:
                return list(self.fs.ls(path, detail=False, refresh=True))
            except FileNotFoundError:
                return []
            except TypeError:  # a filesystem without ``refresh``
                return list(self.fs.ls(path, detail=False))

        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in self.retry(what, listing))

    def snapshot_ids(self) -> list[str]:
        return [n for n in self.names(self.root, "list snapshots") if SNAPSHOT_ID_RE.match(n)]

    def read_manifest(self, snapshot_id: str) -> Manifest:
        try:
            data = self.retry(
                f"read the manifest of {snapshot_id}",
                lambda: self.fs.cat_file(self.path(snapshot_id, MANIFEST_NAME)),
            )
            data = self.unseal(data, f"{snapshot_id}/{MANIFEST_NAME}")
        except FileNotFoundError:
            raise ManifestError(
                f"snapshot {snapshot_id} has no manifest: it is incomplete "
                "(interrupted backup) and cannot be restored"
            ) from None
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
                raise RepositoryError(f"no complete snapshot in {redact_url(self.url)}")
            manifest = done[-1].manifest
            assert manifest is not None
            return manifest
        if not SNAPSHOT_ID_RE.match(ref):
            raise RepositoryError(f"{ref!r} is not a snapshot id (like 20250101T120000Z-0a1b2c)")
        self.config()
        if not self.retry(f"look up {ref}", lambda: self.fs.exists(self.path(ref))):
            raise RepositoryError(f"no snapshot {ref} in {redact_url(self.url)}")
        return self.read_manifest(ref)

    # -- objects -----------------------------------------------------------------
    def open_write(self, snapshot_id: str, name: str) -> IO[bytes]:
        path = self.path(snapshot_id, self.stored(name))
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        raw = self.fs.open(path, "wb")
        if self.keyring is not None:
            return self.keyring.writer(raw, f"{snapshot_id}/{name}")  # type: ignore[return-value]
        return raw  # type: ignore[no-any-return]

    def open_read(self, snapshot_id: str, name: str) -> IO[bytes]:
        try:
            raw = self.fs.open(self.path(snapshot_id, self.stored(name)), "rb")
            if self.keyring is not None:
                return self.keyring.reader(raw, f"{snapshot_id}/{name}")  # type: ignore[return-value]
            return raw  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise RepositoryError(
                f"snapshot {snapshot_id} is missing {name}: it is partial or damaged"
            ) from None

    def write_manifest(self, manifest: Manifest) -> None:
        """Written last, atomically where the backend allows it."""
        data = self.seal(manifest.to_json().encode(), f"{manifest.snapshot_id}/{MANIFEST_NAME}")
        self.put_object(self.path(manifest.snapshot_id, MANIFEST_NAME), data, "write the manifest")

    def remove_object(self, snapshot_id: str, name: str) -> None:
        """Remove one object of a snapshot (with retries); one already gone is fine."""

        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path(snapshot_id, self.stored(name)))

        self.retry(f"remove {name}", rm)

    # -- leases of running backups (see .lease) ----------------------------------
    def write_lease(self, snapshot_id: str, lease: Lease) -> None:
        path = self.path(snapshot_id, LEASE_NAME)
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        data = lease.to_json()
        self.retry("write the lease", lambda: self.fs.pipe_file(path, data))

    def read_lease(self, snapshot_id: str) -> Lease | None:
        """The lease of a running backup, or ``None`` when there is none."""

        def cat() -> bytes | None:
            try:
                return self.fs.cat_file(self.path(snapshot_id, LEASE_NAME))  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        data = self.retry(f"read the lease of {snapshot_id}", cat)
        return None if data is None else Lease.from_json(data)

    def delete_lease(self, snapshot_id: str) -> None:
        self.remove_object(snapshot_id, LEASE_NAME)

    def delete(self, snapshot_id: str, *, retry: bool = True) -> None:
        """Remove a snapshot: the manifest first, so it is never half-listed."""
        if not SNAPSHOT_ID_RE.match(snapshot_id):
            raise RepositoryError(f"{snapshot_id!r} is not a snapshot id")
        self.config()  # a repository of a newer format is not changed
        base = self.path(snapshot_id)
        manifest = self.path(snapshot_id, MANIFEST_NAME)

        def remove() -> None:
            if self.fs.exists(manifest):
                self.fs.rm(manifest)
            if self.fs.exists(base):
                self.fs.rm(base, recursive=True)
            self.fs.invalidate_cache()

        if retry:
            self.retry(f"delete {snapshot_id}", remove)
        else:
            remove()

    def age_s(self, snapshot_id: str) -> float:
        return time.time() - snapshot_time(snapshot_id).timestamp()
