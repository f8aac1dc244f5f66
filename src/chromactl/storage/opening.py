"""Opening a store: the one way any part of chromactl gets one (:func:`open_store`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from chromactl.secrets import read_secret_dir

from . import schemes as _schemes  # noqa: F401  (each module registers its scheme)
from .errors import StoreError
from .fsspec_store import open_fsspec
from .registry import Location, Scheme, lookup, redact_url, registered
from .retrying import RetryingStore, RetryPolicy
from .store import ObjectStore

log = logging.getLogger("chromactl.storage")


def scheme_of(url: str) -> Scheme:
    """The scheme of ``url`` (a plain path is ``file``)."""
    name = url.split("://", 1)[0].lower() if "://" in url else "file"
    found = lookup(name)
    if found is None:
        known = ", ".join(f"{s.name}://" for s in registered())
        raise StoreError(
            f"{redact_url(url)}: unknown storage scheme {name}:// (known: {known}, or a path)", exit_code=2
        )
    return found


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
