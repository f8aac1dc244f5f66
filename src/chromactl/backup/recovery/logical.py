"""Logical export and import through Chroma's HTTP API, to and from Parquet.

Layout under the export URL (a path, s3://, gs:// or az://)::

    export.json                                     what was exported, ``complete`` at the end
    <tenant>/<database>/<collection>/collection.json  name, id, metadata, configuration
    <tenant>/<database>/<collection>/part-00000.parquet ...  one page of records each
    <tenant>/<database>/<collection>/state.json     resume point (next offset, parts written)

Records: ``id`` (string), ``embedding`` (list<float32>), ``document``, ``metadata``
(JSON text, so value types survive), ``uri``. Works with Chroma 1.x and 0.5/0.6
(both serve ``/api/v2``). Export pages through ``get`` with limit/offset and is
resumable: re-running it continues after the last page written. Import upserts,
so re-running it is harmless.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from chromactl import __version__
from chromactl.backup.progress import NullProgress, Progress
from chromactl.errors import ChromactlError
from chromactl.storage import ObjectStore, redact_url

log = logging.getLogger("chromactl.backup")

EXPORT_FORMAT = "chromactl-export"
EXPORT_VERSION = 1
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("document", pa.string()),
        ("metadata", pa.string()),
        ("uri", pa.string()),
    ]
)
INCLUDE = ["embeddings", "documents", "metadatas", "uris"]


class ExportError(ChromactlError):
    """The Chroma server refused a request, or the export is unusable."""


@dataclass
class TransferResult:
    collections: dict[str, int] = field(default_factory=dict)
    records: int = 0
    duration_s: float = 0.0
    resumed: bool = False

    @property
    def records_per_s(self) -> float:
        return self.records / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_s": self.records_per_s}


class ChromaApi:
    """A minimal client for ``/api/v2`` with caller-supplied auth headers."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        tenant: str = "default_tenant",
        database: str = "default_database",
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.tenant = tenant
        self.database = database
        # Named, so that a gateway does not take it for a 0.5/0.6 client (docs/legacy-clients.md).
        named = {"User-Agent": f"chromactl/{__version__}", **(headers or {})}
        self._client = httpx.Client(base_url=f"{self.url}/api/v2", headers=named, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    @property
    def _db(self) -> str:
        return f"/tenants/{self.tenant}/databases/{self.database}"

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        for attempt in range(5):
            try:
                resp = self._client.request(method, path, json=body, params=params or None)
            except httpx.TransportError as exc:
                if attempt == 4:
                    raise ExportError(f"{method} {path}: {exc}") from None
                time.sleep(0.5 * 2**attempt)
                continue
            if resp.status_code in (429, 502, 503, 504) and attempt < 4:
                time.sleep(0.5 * 2**attempt)
                continue
            if resp.status_code >= 400:
                raise ExportError(f"{method} {path} answered HTTP {resp.status_code}: {resp.text[:300]}")
            return resp.json() if resp.content else None
        raise ExportError(f"{method} {path}: gave up")  # pragma: no cover

    def max_batch_size(self) -> int:
        info = self._call("GET", "/pre-flight-checks") or {}
        return int(info.get("max_batch_size", 1000))

    def ensure_database(self) -> None:
        try:
            self._call("GET", f"/tenants/{self.tenant}")
        except ExportError:
            self._call("POST", "/tenants", {"name": self.tenant})
        try:
            self._call("GET", self._db)
        except ExportError:
            self._call("POST", f"/tenants/{self.tenant}/databases", {"name": self.database})

    def collections(self, page: int = 100) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            batch = self._call("GET", f"{self._db}/collections", limit=page, offset=offset)
            out.extend(batch)
            if len(batch) < page:
                return out
            offset += page

    def count(self, collection_id: str) -> int:
        return int(self._call("GET", f"{self._db}/collections/{collection_id}/count"))

    def get(self, collection_id: str, *, limit: int, offset: int) -> dict[str, Any]:
        body = {"limit": limit, "offset": offset, "include": INCLUDE}
        result: dict[str, Any] = self._call("POST", f"{self._db}/collections/{collection_id}/get", body)
        return result

    def create_collection(
        self, name: str, metadata: dict[str, Any] | None, configuration: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "get_or_create": True, "metadata": metadata or None}
        if configuration:
            body["configuration"] = configuration
        result: dict[str, Any] = self._call("POST", f"{self._db}/collections", body)
        return result

    def upsert(self, collection_id: str, records: dict[str, Any]) -> None:
        self._call("POST", f"{self._db}/collections/{collection_id}/upsert", records)


# -- export ---------------------------------------------------------------------


def _page_table(page: dict[str, Any]) -> pa.Table:
    ids = page["ids"]
    n = len(ids)

    def column(key: str) -> list[Any]:
        values = page.get(key)
        return list(values) if values is not None else [None] * n

    embeddings = column("embeddings")
    metadatas = column("metadatas")
    arrays = [
        pa.array(ids, pa.string()),
        pa.array(embeddings, pa.list_(pa.float32())),
        pa.array(column("documents"), pa.string()),
        pa.array([None if m is None else json.dumps(m) for m in metadatas], pa.string()),
        pa.array(column("uris"), pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _write_json(store: ObjectStore, key: str, data: Any) -> None:
    store.save(key, (json.dumps(data, indent=2) + "\n").encode(), what=f"write {key}")


def _read_json(store: ObjectStore, key: str) -> Any:
    data = store.load(key, what=f"read {key}")
    return None if data is None else json.loads(data)


def export(
    api: ChromaApi,
    out: ObjectStore,
    *,
    collections: list[str] | None = None,
    page_size: int = 1000,
    progress: Progress | None = None,
) -> TransferResult:
    """Export collections of ``api``'s tenant/database to Parquet under ``out``."""
    progress = progress or NullProgress()
    start = time.perf_counter()
    result = TransferResult()
    cols = api.collections()
    if collections:
        missing = set(collections) - {c["name"] for c in cols}
        if missing:
            raise ExportError(f"no such collection(s): {', '.join(sorted(missing))}")
        cols = [c for c in cols if c["name"] in collections]
    index = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "chromactl_version": __version__,
        "source": redact_url(api.url),
        "tenant": api.tenant,
        "database": api.database,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": False,
        "collections": [{"name": c["name"], "dir": f"{api.tenant}/{api.database}/{c['name']}"} for c in cols],
    }
    previous = _read_json(out, "export.json")
    if previous and previous.get("complete") is False:
        result.resumed = True
        index["created_at"] = previous.get("created_at", index["created_at"])
    _write_json(out, "export.json", index)
    for col in cols:
        base = f"{api.tenant}/{api.database}/{col['name']}"
        total = api.count(col["id"])
        state = _read_json(out, f"{base}/state.json") or {}
        if state.get("collection_id") != col["id"]:
            state = {"collection_id": col["id"], "next_offset": 0, "parts": 0, "done": False}
        if state["done"]:
            result.collections[col["name"]] = int(state["next_offset"])
            continue
        if state["next_offset"]:
            result.resumed = True
        _write_json(
            out,
            f"{base}/collection.json",
            {
                "id": col["id"],
                "name": col["name"],
                "metadata": col.get("metadata"),
                "configuration_json": col.get("configuration_json"),
                "dimension": col.get("dimension"),
                "count": total,
            },
        )
        progress.phase(f"export {col['name']}", total)
        progress.advance(int(state["next_offset"]))
        while True:
            page = api.get(col["id"], limit=page_size, offset=int(state["next_offset"]))
            n = len(page["ids"])
            if n:
                buf = io.BytesIO()
                pq.write_table(_page_table(page), buf, compression="zstd")
                part = f"{base}/part-{int(state['parts']):05d}.parquet"
                out.save(part, buf.getvalue(), what=f"write {part}")
                state["parts"] += 1
                state["next_offset"] += n
                result.records += n
                progress.advance(n)
            if n < page_size:
                state["done"] = True
            _write_json(out, f"{base}/state.json", state)
            if state["done"]:
                break
        result.collections[col["name"]] = int(state["next_offset"])
    index["complete"] = True
    _write_json(out, "export.json", index)
    progress.close()
    result.duration_s = time.perf_counter() - start
    return result


# -- import ---------------------------------------------------------------------


def _legacy_configuration(col: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(configuration for a 1.x server, metadata) from an export of any version."""
    metadata = dict(col.get("metadata") or {})
    config = col.get("configuration_json") or {}
    if "hnsw" in config or "spann" in config:  # already 1.x
        return {k: v for k, v in config.items() if k in ("hnsw", "spann") and v}, metadata
    hnsw: dict[str, Any] = {}
    legacy = config.get("hnsw_configuration") or {}
    names = {
        "space": "space",
        "ef_construction": "ef_construction",
        "ef_search": "ef_search",
        "M": "max_neighbors",
        "resize_factor": "resize_factor",
        "sync_threshold": "sync_threshold",
    }
    for old, new in names.items():
        if old in legacy:
            hnsw[new] = legacy[old]
    for key in list(metadata):
        if key.startswith("hnsw:"):
            old = key.split(":", 1)[1]
            if old in names:
                hnsw[names[old]] = metadata.pop(key)
    return ({"hnsw": hnsw} if hnsw else None), metadata


def _parts(src: ObjectStore, base: str) -> list[str]:
    return [f"{base}/{n}" for n in src.list(base, what=f"list {base}") if n.endswith(".parquet")]


def _batches(table: pa.Table, size: int) -> Iterator[dict[str, Any]]:
    for start in range(0, table.num_rows, size):
        chunk = table.slice(start, size).to_pydict()
        embeddings = chunk["embedding"]
        batch: dict[str, Any] = {"ids": chunk["id"]}
        if any(e is not None for e in embeddings):
            batch["embeddings"] = embeddings
        if any(d is not None for d in chunk["document"]):
            batch["documents"] = chunk["document"]
        if any(m is not None for m in chunk["metadata"]):
            batch["metadatas"] = [None if m is None else json.loads(m) for m in chunk["metadata"]]
        if any(u is not None for u in chunk["uri"]):
            batch["uris"] = chunk["uri"]
        yield batch


def import_export(
    src: ObjectStore,
    api: ChromaApi,
    *,
    collections: list[str] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> TransferResult:
    """Write an export into ``api``'s tenant/database (collections are created or reused)."""
    progress = progress or NullProgress()
    start = time.perf_counter()
    index = _read_json(src, "export.json")
    if not index or index.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{redact_url(src.url)} holds no chromactl export (no export.json)", exit_code=2)
    if index.get("format_version", 0) > EXPORT_VERSION:
        raise ExportError("this export is from a newer chromactl; upgrade chromactl")
    if not index.get("complete"):
        raise ExportError("this export is incomplete: run the export again to finish it")
    size = min(batch_size or 1000, api.max_batch_size())
    api.ensure_database()
    result = TransferResult()
    for entry in index["collections"]:
        if collections and entry["name"] not in collections:
            continue
        col = _read_json(src, f"{entry['dir']}/collection.json")
        configuration, metadata = _legacy_configuration(col)
        created = api.create_collection(col["name"], metadata or None, configuration)
        progress.phase(f"import {col['name']}", int(col.get("count") or 0))
        n = 0
        for part in _parts(src, entry["dir"]):
            table = src.load_stream(part, lambda fh: pq.read_table(fh, schema=SCHEMA), what=f"read {part}")
            for batch in _batches(table, size):
                api.upsert(created["id"], batch)
                n += len(batch["ids"])
                progress.advance(len(batch["ids"]))
        result.collections[col["name"]] = n
        result.records += n
    progress.close()
    result.duration_s = time.perf_counter() - start
    return result
