"""Schemes by name: what each needs from a :class:`Location` to open its store.

A scheme is one module of :mod:`.schemes` that calls :func:`register` with a :class:`Scheme`:
its names, the Python package of its client, the credential files it takes from a mounted
Secret, and how it turns a location into its client's options. :func:`open_store` is the one
way any part of chromactl gets a store.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromactl.secrets import read_secret_dir

from .errors import StoreError
from .fsspec_store import open_fsspec
from .retrying import RetryingStore, RetryPolicy
from .store import ObjectStore

log = logging.getLogger("chromactl.storage")


@dataclass(frozen=True)
class Location:
    """Where a store is and how to reach it; nothing secret (credentials are files)."""

    url: str
    #: An S3-compatible endpoint (MinIO and others), or a GCS emulator.
    endpoint_url: str | None = None
    #: The S3 region.
    region: str | None = None
    #: Further non-secret options of the scheme's client.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: A mounted Secret: each file a credential, named as the scheme's environment variable.
    credentials_dir: Path | None = None
    #: Connect and read timeout of one request.
    io_timeout_s: float = 30.0


#: Turns a location and the credentials read for it into the client's options.
ClientOptions = Callable[[Location, Mapping[str, str]], dict[str, Any]]


def no_options(location: Location, credentials: Mapping[str, str]) -> dict[str, Any]:
    return dict(location.options)


@dataclass(frozen=True)
class Scheme:
    """One kind of store."""

    #: The URL scheme, then its aliases (``s3``, ``s3a``).
    names: tuple[str, ...]
    #: Where the client comes from, for the error when it is not installed.
    install: str = ""
    #: Credential file names (= environment variable names) and the client option each sets.
    credentials: Mapping[str, str] = field(default_factory=dict)
    client_options: ClientOptions = no_options
    #: A directory of this machine: opened without the retry wrapper (a full disk does not pass).
    local: bool = False

    @property
    def name(self) -> str:
        return self.names[0]


_SCHEMES: dict[str, Scheme] = {}


def register(scheme: Scheme) -> Scheme:
    for name in scheme.names:
        _SCHEMES[name] = scheme
    return scheme


def known_schemes() -> list[Scheme]:
    """Every registered scheme, once."""
    _load()
    return list({id(s): s for s in _SCHEMES.values()}.values())


def _load() -> None:
    importlib.import_module("chromactl.storage.schemes")  # each module registers itself


def scheme_of(url: str) -> Scheme:
    _load()
    name = url.split("://", 1)[0].lower() if "://" in url else "file"
    found = _SCHEMES.get(name)
    if found is None:
        known = ", ".join(f"{s.name}://" for s in known_schemes())
        raise StoreError(
            f"{redact_url(url)}: unknown storage scheme {name}:// (known: {known}, or a path)", exit_code=2
        )
    return found


def redact_url(url: str) -> str:
    """A URL fit for logs: any ``user:password@`` part removed."""
    return re.sub(r"://[^/@]*@", "://", url)


def credentials_for(scheme: Scheme, directory: Path | None) -> dict[str, str]:
    """The credentials of a mounted Secret that ``scheme`` takes, by file name; a variable
    already set in the environment wins over its file. Other files are named in the log and
    left alone; values are never logged."""
    if directory is None:
        return {}
    found = read_secret_dir(directory, what=f"credentials of the {scheme.name} target")
    unknown = sorted(set(found) - set(scheme.credentials))
    if unknown:
        log.warning(
            "credentials files %s are not credentials of %s:// targets (%s): ignored",
            ", ".join(unknown),
            scheme.name,
            ", ".join(scheme.credentials) or "none",
        )
    return {k: v for k, v in found.items() if k in scheme.credentials and k not in os.environ}


def open_store(where: Location | str, *, retry: RetryPolicy | None = None) -> ObjectStore:
    """The store at ``where``: opened by its scheme, wrapped in retries unless it is local."""
    location = Location(where) if isinstance(where, str) else where
    if not location.url:
        raise StoreError("no backup target: pass --repo or set backup.target", exit_code=2)
    scheme = scheme_of(location.url)
    options = scheme.client_options(location, credentials_for(scheme, location.credentials_dir))
    try:
        store = open_fsspec(location.url, options)
    except ImportError as exc:
        hint = f": {scheme.install}" if scheme.install else ""
        raise StoreError(f"cannot open {redact_url(location.url)}: {exc}{hint}") from None
    except (ValueError, TypeError) as exc:
        raise StoreError(f"cannot open {redact_url(location.url)}: {exc}", exit_code=2) from None
    if scheme.local:
        return store
    if hasattr(store.fs, "retries"):
        store.fs.retries = 1  # the client's own retry loop: RetryingStore decides
    return RetryingStore(store, retry or RetryPolicy(), redact_url(location.url))
