"""Servers and writers the backup tests share: Chroma, a write-holding proxy, moto S3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.helpers import run_chroma_0x
from tests.gateway.helpers import stop_process as stop

VENV_BIN = Path(sys.executable).parent
CHROMA_BIN = VENV_BIN / "chroma"
REPO_ROOT = Path(__file__).resolve().parents[2]
LEGACY_VERSION = "0.6.3"


DB = "/api/v2/tenants/default_tenant/databases/default_database"
ADMIN = "ck_admin-token-for-backup-tests"
DIM = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


@dataclass
class Chroma:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.proc)


@contextmanager
def run_chroma(data_dir: Path, *, legacy: bool = False) -> Iterator[Chroma]:
    """Chroma 1.x keeping its data in ``data_dir``; with ``legacy``, Chroma 0.6.3 (the legacy
    server) working in ``data_dir``."""
    if legacy:
        with run_chroma_0x(LEGACY_VERSION, data_dir) as server:
            yield Chroma(server.url, data_dir / "data", server.process)
        return
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / f"chroma-{port}.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    config = data_dir.parent / f"chroma-{port}.yaml"
    config.write_text(
        f"persist_path: {data_dir}\nport: {port}\nlisten_address: 127.0.0.1\nallow_reset: true\n"
    )
    cmd = [str(CHROMA_BIN), "run", str(config)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/v2/heartbeat", proc)
        yield Chroma(url, data_dir, proc)
    finally:
        stop(proc)
        log.close()


def embedding(record_id: str) -> list[float]:
    """A deterministic float32-exact vector per id."""
    digest = hashlib.sha256(record_id.encode()).digest() * 2
    values = struct.unpack(f"<{DIM}H", digest[: 2 * DIM])
    return [float(struct.unpack("<f", struct.pack("<f", v / 65535.0))[0]) for v in values]


def record(record_id: str) -> dict[str, Any]:
    n = int(record_id.rsplit("-", 1)[-1])
    return {
        "embedding": embedding(record_id),
        "document": f"document {record_id}",
        "metadata": {"n": n, "even": n % 2 == 0, "tag": f"t{n % 7}", "score": n / 4},
    }


def create_collection(url: str, name: str, **extra: Any) -> str:
    body = {
        "name": name,
        "get_or_create": True,
        "configuration": {"hnsw": {"ef_search": 400, "ef_construction": 200}},
        **extra,
    }
    resp = httpx.post(f"{url}{DB}/collections", json=body, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["id"])


def add(url: str, collection_id: str, ids: list[str], client: httpx.Client | None = None) -> None:
    recs = [record(i) for i in ids]
    body = {
        "ids": ids,
        "embeddings": [r["embedding"] for r in recs],
        "documents": [r["document"] for r in recs],
        "metadatas": [r["metadata"] for r in recs],
    }
    c = client or httpx.Client(timeout=60)
    resp = c.post(f"{url}{DB}/collections/{collection_id}/add", json=body)
    resp.raise_for_status()


def get_all(url: str, collection_id: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{url}{DB}/collections/{collection_id}/get",
        json={"include": ["embeddings", "documents", "metadatas", "uris"]},
        timeout=120,
    )
    resp.raise_for_status()
    return dict(resp.json())


def seed(url: str, collections: dict[str, int]) -> dict[str, str]:
    """Create collections with ``n`` records each; returns name → id."""
    ids: dict[str, str] = {}
    with httpx.Client(timeout=60) as client:
        for name, n in collections.items():
            cid = create_collection(url, name)
            ids[name] = cid
            for start in range(0, n, 500):
                add(url, cid, [f"{name}-{i}" for i in range(start, min(n, start + 500))], client)
    return ids


@dataclass
class Writer:
    """Adds batches to one collection until stopped; remembers what was acknowledged."""

    url: str
    collection_id: str
    batch: int = 50
    acked: list[list[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    prefix: str = "live"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=60, headers=self.headers) as client:
            while not self._stop.is_set():
                ids = [f"{self.prefix}-{i}" for i in range(n, n + self.batch)]
                try:
                    add(self.url, self.collection_id, ids, client)
                except httpx.HTTPError as exc:
                    self.errors.append(str(exc))
                    return
                self.acked.append(ids)
                n += self.batch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


class HoldingProxy:
    """A small reverse proxy with the gateway's hold API: while a hold is active,
    write requests wait; the hold waits for in-flight writes to finish."""

    WRITE_SUFFIXES = ("/add", "/upsert", "/update", "/delete")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.cond = threading.Condition()
        self.in_flight = 0
        self.holds: set[str] = set()
        self.hold_log: list[tuple[float, float]] = []
        self._opened: dict[str, float] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                if self.path.startswith("/chromactl/v1/hold"):
                    self._hold_api(body)
                    return
                is_write = self.command in ("PUT", "DELETE") or (
                    self.command == "POST" and self.path.endswith(proxy.WRITE_SUFFIXES)
                )
                if is_write:
                    with proxy.cond:
                        proxy.cond.wait_for(lambda: not proxy.holds, timeout=30)
                        proxy.in_flight += 1
                try:
                    resp = httpx.request(
                        self.command,
                        proxy.upstream + self.path,
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=60,
                    )
                    self._reply(resp.status_code, resp.content)
                finally:
                    if is_write:
                        with proxy.cond:
                            proxy.in_flight -= 1
                            proxy.cond.notify_all()

            def _hold_api(self, body: bytes) -> None:
                if self.command == "POST":
                    start = time.perf_counter()
                    hold_id = uuid.uuid4().hex
                    with proxy.cond:
                        proxy.holds.add(hold_id)
                        proxy.cond.wait_for(lambda: proxy.in_flight == 0, timeout=30)
                    proxy._opened[hold_id] = time.perf_counter()
                    waited = time.perf_counter() - start
                    json.loads(body or b"{}")
                    self._reply(200, json.dumps({"hold_id": hold_id, "waited_s": waited}).encode())
                elif self.command == "DELETE":
                    hold_id = self.path.rsplit("/", 1)[-1]
                    with proxy.cond:
                        known = hold_id in proxy.holds
                        proxy.holds.discard(hold_id)
                        proxy.cond.notify_all()
                    if known:
                        opened = proxy._opened.pop(hold_id)
                        proxy.hold_log.append((opened, time.perf_counter()))
                    self._reply(200 if known else 404, b'{"released": true}')

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def moto_s3() -> Iterator[str]:
    """A real S3 API server (moto) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    moto = VENV_BIN / "moto_server"
    cmd = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint, proc, timeout_s=30)
        yield endpoint
    finally:
        stop(proc)


def s3_env(monkeypatch: Any, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def make_bucket(endpoint: str, name: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing-secret", endpoint_url=endpoint, skip_instance_cache=True
    )
    fs.mkdir(name)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class TcpProxy:
    """A TCP forwarder to ``127.0.0.1:upstream_port`` for storage faults: it can wait
    ``delay_s`` before passing on each piece of an answer (a slow server) and reset
    the first ``drop_first`` connections (a flaky network), or all of them once
    ``dead_after_bytes`` were sent to it (storage that goes away mid-backup)."""

    def __init__(
        self,
        upstream_port: int,
        *,
        delay_s: float = 0.0,
        drop_first: int = 0,
        dead_after_bytes: int | None = None,
    ) -> None:
        self.dead_after_bytes = dead_after_bytes
        self.sent = 0
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.drop_first = drop_first
        self.dropped = 0
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.dropped < self.drop_first or self.dead:
                self.dropped += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # a reset
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            self._open += [conn, up]
            threading.Thread(target=self._pump, args=(conn, up, 0.0, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, self.delay_s), daemon=True).start()

    @property
    def dead(self) -> bool:
        return self.dead_after_bytes is not None and self.sent > self.dead_after_bytes

    def _pump(self, src: socket.socket, dst: socket.socket, delay_s: float, upstream: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if upstream:
                    self.sent += len(data)
                if self.dead:  # the storage is gone: reset both sides
                    for s in (src, dst):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        s.close()
                    return
                if delay_s:
                    time.sleep(delay_s)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for s in self._open:
            with suppress(OSError):
                s.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def gateway_process(
    tmp_path: Path,
    chroma_url: str,
    port: int,
    *,
    persist_path: Path | None = None,
    workers: int = 1,
    extra: str = "",
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``chromactl gateway`` as its own process (so it can be killed); ``extra``: more of its
    config file (top-level sections other than chroma and gateway)."""
    token = tmp_path / "admin.token"
    token.write_text(ADMIN + "\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"chroma:\n  url: {chroma_url}\n"
        + (f"  persist_path: {persist_path}\n" if persist_path else "")
        + f"gateway:\n  listen_address: 127.0.0.1\n  port: {port}\n  metrics_port: null\n"
        f"  workers: {workers}\n"
        "  write_wait_s: 30\n  max_hold_s: 60\n"
        "  auth:\n    token:\n      credentials:\n"
        f"        - {{name: admin, token_file: {token}, role: admin, tenants: ['*']}}\n" + extra
    )
    log = open(tmp_path / f"gateway-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "chromactl", "gateway", "--config", str(config)],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, timeout_s=60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        log.close()


def to_legacy_format(repo: Any, snapshot_id: str, version: int) -> None:
    """Rewrite a format-3 snapshot of an unencrypted local ``repo`` as chromactl before format 3
    wrote it: each file one object ``files/<path>.zst`` (format 2: one zstd frame per chunk;
    format 1: a single frame) and a manifest without chunk lists."""
    import zstandard

    from chromactl.backup.repository.chunkstore import ChunkStore

    store = ChunkStore(repo)
    root = Path(repo.url) / snapshot_id
    data = json.loads((root / "manifest.json").read_text())
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    for entry in data["files"]:
        chunks = entry.pop("chunks")
        del entry["chunk_sizes"], entry["chunk_xxh3"]
        if version >= 2:
            stored = b"".join(store.frame(c) for c in chunks) or cctx.compress(b"")
        else:
            stored = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(
                b"".join(store.read(c) for c in chunks)
            )
        obj = root / "files" / f"{entry['path']}.zst"
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(stored)
        entry["stored_size"] = len(stored)
        entry["stored_sha256"] = hashlib.sha256(stored).hexdigest()
    data["format_version"] = version
    if version == 1:
        del data["chunk_size"]
    (root / "manifest.json").write_text(json.dumps(data))


def chunk_object(repo: Any, chunk: str) -> Path:
    """Where one chunk of a local ``repo`` is stored."""
    return Path(repo.url) / chunk_key(repo, chunk)


def chunk_key(repo: Any, chunk: str) -> str:
    """The key of one chunk's object in ``repo``'s store."""
    from chromactl.backup.repository.chunkstore import ChunkStore

    store = ChunkStore(repo)
    return store.object_key(store.key(chunk))


def s3_repository(
    url: str, endpoint: str, *, secret: bytes | None = None, options: dict[str, Any] | None = None
) -> Any:
    """The repository at an ``s3://`` URL of the moto server at ``endpoint`` (``secret``: its
    encryption secret; ``options``: more s3fs options, such as keys)."""
    from chromactl.backup.repository.repository import Repository
    from chromactl.storage import Location, open_store

    location = Location(url, endpoint_url=endpoint, options={"skip_instance_cache": True, **(options or {})})
    return Repository(open_store(location), secret=secret)


def stored_keys(repo: Any) -> list[str]:
    """Every object in ``repo``'s store, by key."""
    return sorted(repo.store.walk(""))
