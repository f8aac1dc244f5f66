"""``s3://bucket/prefix``: Amazon S3 and S3-compatible stores (MinIO, Ceph, R2...), with s3fs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Location, Scheme, register

#: Credential files of a mounted Secret and the s3fs option each sets.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}


def client_options(location: Location, credentials: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(location.options)
    if location.endpoint_url:
        options.setdefault("endpoint_url", location.endpoint_url)
    if location.region:
        options.setdefault("client_kwargs", {"region_name": location.region})
    # A chunk is read in one GET: s3fs would first ask for its size to split the read (a
    # second request per chunk, for objects of at most ~1 MiB).
    options.setdefault("max_concurrency", 1)
    # One request may take io_timeout_s; the retry wrapper retries, not botocore.
    options.setdefault(
        "config_kwargs",
        {
            "connect_timeout": location.io_timeout_s,
            "read_timeout": location.io_timeout_s,
            "retries": {"max_attempts": 1, "mode": "standard"},
        },
    )
    options.update({CREDENTIALS[name]: value for name, value in credentials.items()})
    return options


S3 = register(
    Scheme(
        names=("s3", "s3a"),
        install="pip install 'chromactl[s3]'",
        credentials=CREDENTIALS,
        client_options=client_options,
    )
)
