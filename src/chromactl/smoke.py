"""Smoke checks against a running Chroma: what `helm test` runs.

Standard library only, so the checks run anywhere chromactl does. Each check
raises :class:`SmokeError` with the request that failed and Chroma's answer.
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromactl.errors import ChromactlError

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"


class SmokeError(ChromactlError):
    """A smoke check failed."""


@dataclass
class Credentials:
    """What the smoke client sends to authenticate; empty means nothing."""

    token: str | None = None
    #: ``AUTHORIZATION`` (``Authorization: Bearer``) or ``X-CHROMA-TOKEN``.
    token_header: str = "AUTHORIZATION"
    username: str | None = None
    password: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            if self.token_header.upper().replace("_", "-") == "X-CHROMA-TOKEN":
                return {"X-Chroma-Token": self.token}
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}


def ca_bundle(path: Path | None) -> str | None:
    """The CA file to verify an https server with, or None for the system's CAs.

    The chart points helm tests at the ``ca.crt`` of the TLS Secret, mounted as optional:
    a certificate from a public CA comes without one, and the file is then absent.
    """
    if path is None:
        return None
    if not path.exists():
        print(f"{path} does not exist: verifying the server with the system's CAs", file=sys.stderr)
        return None
    return str(path)


@dataclass
class SmokeClient:
    """A minimal Chroma HTTP client for the smoke checks."""

    url: str
    credentials: Credentials = field(default_factory=Credentials)
    ca_file: str | None = None
    timeout: float = 10.0

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in self.credentials.headers().items():
            req.add_header(name, value)
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise SmokeError(f"{method} {self.url}{path}: cannot connect: {exc}") from None
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def expect(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, payload = self.request(method, path, body)
        if status not in ok:
            raise SmokeError(f"{method} {path} answered {status}: {payload}")
        return payload

    def api_version(self) -> str:
        """``v2`` for Chroma >= 0.6, ``v1`` for older servers."""
        status, _ = self.request("GET", "/api/v2/heartbeat")
        return "v1" if status in (404, 410) else "v2"


def check_heartbeat(client: SmokeClient) -> dict[str, Any]:
    """Chroma answers its heartbeat."""
    version = client.api_version()
    payload = client.expect("GET", f"/api/{version}/heartbeat")
    return {"check": "heartbeat", "api": version, "answer": payload}


def check_collection(client: SmokeClient) -> dict[str, Any]:
    """Create a collection, add three records, query the nearest, delete it."""
    version = client.api_version()
    name = f"helm-test-{uuid.uuid4().hex[:12]}"
    if version == "v2":
        base = f"/api/v2/tenants/{DEFAULT_TENANT}/databases/{DEFAULT_DATABASE}/collections"
        create_path, delete_path = base, f"{base}/{name}"
    else:
        base = "/api/v1/collections"
        scope = f"?tenant={DEFAULT_TENANT}&database={DEFAULT_DATABASE}"
        create_path, delete_path = base + scope, f"{base}/{name}{scope}"
    collection = client.expect("POST", create_path, {"name": name})
    records = f"{base}/{collection['id']}"
    try:
        client.expect(
            "POST",
            f"{records}/add",
            {
                "ids": ["a", "b", "c"],
                "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                "documents": ["alpha", "beta", "gamma"],
            },
        )
        result = client.expect(
            "POST",
            f"{records}/query",
            {"query_embeddings": [[0.0, 0.9, 0.1]], "n_results": 2, "include": ["documents"]},
        )
        nearest = result["ids"][0][0]
        if nearest != "b":
            raise SmokeError(f"query returned {result['ids'][0]}, expected 'b' first")
    finally:
        client.expect("DELETE", delete_path, ok=(200, 204))
    return {"check": "collection", "api": version, "collection": name, "nearest": nearest}


CHECKS = {"heartbeat": check_heartbeat, "collection": check_collection}
