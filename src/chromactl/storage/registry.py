"""Schemes by name: what each needs from a :class:`Location` to open its store.

A scheme is one module of :mod:`.schemes` that calls :func:`register` with a :class:`Scheme`:
its names, the Python package of its client, the credential files it takes from a mounted
Secret, and how it turns a location into its client's options (:mod:`.opening` opens it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def lookup(name: str) -> Scheme | None:
    """The scheme registered under ``name``."""
    return _SCHEMES.get(name)


def registered() -> list[Scheme]:
    """Every registered scheme, once."""
    return list({id(s): s for s in _SCHEMES.values()}.values())


def redact_url(url: str) -> str:
    """A URL fit for logs: any ``user:password@`` part removed."""
    return re.sub(r"://[^/@]*@", "://", url)
