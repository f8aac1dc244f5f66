"""Small HTTP servers the packaging tests publish to: a static chart repository and an OCI registry.

The OCI registry speaks the part of the distribution spec that `helm push` and `helm pull`
use (blob upload by POST then PUT, manifests by tag or digest, tags list), in memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@contextmanager
def serve(handler: Any) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 in a thread; yields ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet:
    def log_message(self, *args: Any) -> None:
        pass


class _Static(_Quiet, SimpleHTTPRequestHandler):
    pass


@contextmanager
def chart_repository(directory: Path) -> Iterator[str]:
    """A chart repository served from ``directory`` (index.yaml and archives); yields its URL."""
    with serve(partial(_Static, directory=str(directory))) as host:
        yield f"http://{host}"


class OciRegistry:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(_Quiet, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self) -> tuple[str, str, str, dict[str, list[str]]]:
                url = urlsplit(self.path)
                path = url.path
                for kind in ("/blobs/uploads/", "/blobs/", "/manifests/", "/tags/list"):
                    if kind in path:
                        name, _, ref = path[len("/v2/") :].partition(kind)
                        return kind, name, ref, parse_qs(url.query)
                return path, "", "", parse_qs(url.query)

            def do_GET(self) -> None:
                kind, name, ref, _ = self._route()
                with registry.lock:
                    if kind == "/v2/":
                        return self._send(200, b"{}", {"Content-Type": "application/json"})
                    if kind == "/blobs/" and ref in registry.blobs:
                        blob = registry.blobs[ref]
                        return self._send(200, blob, {"Docker-Content-Digest": ref})
                    if kind == "/manifests/" and (name, ref) in registry.manifests:
                        media, data = registry.manifests[(name, ref)]
                        digest = "sha256:" + hashlib.sha256(data).hexdigest()
                        return self._send(200, data, {"Content-Type": media, "Docker-Content-Digest": digest})
                    if kind == "/tags/list":
                        tags = sorted(t for n, t in registry.manifests if n == name and ":" not in t)
                        body = json.dumps({"name": name, "tags": tags}).encode()
                        return self._send(200, body, {"Content-Type": "application/json"})
                return self._send(404, b'{"errors": [{"code": "NOT_FOUND"}]}')

            do_HEAD = do_GET

            def do_POST(self) -> None:
                kind, name, _, _ = self._route()
                self._body()
                if kind != "/blobs/uploads/":
                    return self._send(404)
                upload = uuid.uuid4().hex
                with registry.lock:
                    registry.uploads[upload] = bytearray()
                location = f"/v2/{name}/blobs/uploads/{upload}"
                return self._send(202, b"", {"Location": location, "Docker-Upload-UUID": upload})

            def do_PATCH(self) -> None:
                _, name, upload, _ = self._route()
                data = self._body()
                with registry.lock:
                    registry.uploads[upload] += data
                    size = len(registry.uploads[upload])
                location = f"/v2/{name}/blobs/uploads/{upload}"
                return self._send(202, b"", {"Location": location, "Range": f"0-{size - 1}"})

            def do_PUT(self) -> None:
                kind, name, ref, query = self._route()
                data = self._body()
                if kind == "/blobs/uploads/":
                    digest = query["digest"][0]
                    with registry.lock:
                        blob = bytes(registry.uploads.pop(ref, bytearray())) + data
                        if "sha256:" + hashlib.sha256(blob).hexdigest() != digest:
                            return self._send(400, b'{"errors": [{"code": "DIGEST_INVALID"}]}')
                        registry.blobs[digest] = blob
                    return self._send(
                        201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
                    )
                if kind == "/manifests/":
                    digest = "sha256:" + hashlib.sha256(data).hexdigest()
                    media = self.headers.get("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    with registry.lock:
                        registry.manifests[(name, ref)] = (media, data)
                        registry.manifests[(name, digest)] = (media, data)
                    return self._send(
                        201,
                        b"",
                        {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest},
                    )
                return self._send(404)

        return Handler


@contextmanager
def oci_registry() -> Iterator[tuple[str, OciRegistry]]:
    """An in-memory OCI registry over plain HTTP; yields (host:port, registry)."""
    registry = OciRegistry()
    with serve(registry.handler()) as host:
        yield host, registry
