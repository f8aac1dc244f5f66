"""``gs://bucket/prefix``: Google Cloud Storage, with gcsfs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from ..registry import Location, Scheme, register


def client_options(location: Location, credentials: Mapping[str, str]) -> dict[str, Any]:
    if location.region:
        raise StoreError("region is an S3 setting: a gs:// bucket has its own location", exit_code=2)
    options: dict[str, Any] = dict(location.options)
    if location.endpoint_url:
        options.setdefault("endpoint_url", location.endpoint_url)
    options.setdefault("timeout", location.io_timeout_s)
    key = credentials.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key is not None:
        # The service account key itself (JSON), or the path of a file that holds it.
        options["token"] = json.loads(key) if key.lstrip().startswith("{") else key
    return options


GS = register(
    Scheme(
        names=("gs", "gcs"),
        install="pip install gcsfs",
        credentials={"GOOGLE_APPLICATION_CREDENTIALS": "token"},
        client_options=client_options,
    )
)
