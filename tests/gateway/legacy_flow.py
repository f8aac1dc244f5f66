"""An app's flow with an old Chroma client, run in that client's venv (only chromadb and the
standard library here): every operation of docs/legacy-clients.md's matrix, each one's outcome
printed as one JSON document on the last line of standard output.

    python legacy_flow.py HOST PORT TOKEN

An outcome is the result made comparable (ids, documents, metadatas, embeddings, distances,
counts, collection names and metadata) or the exception's class and text.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

import chromadb

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
VERSION = chromadb.__version__
NAME = "legacy-flow"
out: dict[str, Any] = {"version": VERSION}


def plain(value: Any) -> Any:
    """Results as JSON: numpy arrays to lists, floats rounded, collections to their fields."""
    if isinstance(value, str):
        return str(value)  # 0.6's collection names are a str subclass
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("included", "data", "uris")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "name") and hasattr(value, "metadata"):
        return {"name": value.name, "metadata": value.metadata}
    return value


def step(name: str, fn: Callable[[], Any]) -> Any:
    try:
        found = fn()
    except Exception as exc:  # the class is the outcome
        text = re.sub(r" \(trace ID: \w+\)$", "", str(exc))  # the server's trace id, not its answer
        text = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", text)  # differs run to run
        out[name] = {"error": f"{type(exc).__module__}.{type(exc).__name__}", "text": text[:200]}
        return None
    out[name] = {"result": plain(found)}
    return found


def ours(listed: Any) -> list[str]:
    """The flow's collections among those listed (the server may hold others)."""
    names = (c if isinstance(c, str) else c.name for c in listed)
    return sorted(str(n) for n in names if str(n).startswith(NAME))


headers = {"Authorization": f"Bearer {token}"}
if VERSION.startswith("0.4"):
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    client = chromadb.HttpClient(host=host, port=str(port), headers=headers, settings=settings)
else:
    client = chromadb.HttpClient(host=host, port=port, headers=headers)

step("heartbeat", lambda: client.heartbeat() > 0)
try:
    client.delete_collection(NAME)
    client.delete_collection(NAME + "-renamed")
except Exception:
    pass
# Vectors come with the records: no embedding function (it would download a model).
create = {"embedding_function": None}
step(
    "create", lambda: client.create_collection(NAME, metadata={"hnsw:space": "cosine", "team": "a"}, **create)
)
step("get_or_create", lambda: client.get_or_create_collection(NAME, **create))
col = step("get", lambda: client.get_collection(NAME, **create))
step("list", lambda: ours(client.list_collections()))
if col is None:
    print(json.dumps(out))
    sys.exit(0)
vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.7, 0.7, 0.1], [0.2, 0.1, 0.9]]
# What a LangChain- or LlamaIndex-style store does: add texts with metadatas and vectors...
step(
    "add",
    lambda: col.add(
        ids=["a", "b", "c", "d"],
        embeddings=vectors,
        metadatas=[
            {"source": "x", "k": 1},
            {"source": "y", "k": 2},
            {"source": "x", "k": 3},
            {"source": "z", "k": 4},
        ],
        documents=["alpha one", "beta two", "gamma three", "delta four"],
    ),
)
step("count", col.count)
step("wrong_dimension", lambda: col.add(ids=["w"], embeddings=[[1.0, 0.0]]))
step("get_ids", lambda: col.get(ids=["b", "a"], include=["documents", "metadatas", "embeddings"]))
step("get_where", lambda: col.get(where={"k": {"$gte": 2}}))
step("get_where_document", lambda: col.get(where_document={"$contains": "two"}))
step("get_page", lambda: col.get(limit=2, offset=1))
step("peek", lambda: col.peek())
# ... a similarity search, and one with a metadata filter ...
step("query", lambda: col.query(query_embeddings=[[1.0, 0.1, 0.0]], n_results=3))
step(
    "query_filtered",
    lambda: col.query(
        query_embeddings=[[1.0, 0.1, 0.0]],
        n_results=2,
        where={"source": "x"},
        include=["distances", "documents"],
    ),
)
step("query_two", lambda: col.query(query_embeddings=[[0.0, 1.0, 0.0], [0.2, 0.1, 0.9]], n_results=1))
step(
    "update",
    lambda: col.update(
        ids=["a"],
        embeddings=[[0.9, 0.0, 0.1]],
        metadatas=[{"source": "x", "k": 10}],
        documents=["alpha updated"],
    ),
)
step(
    "upsert",
    lambda: col.upsert(ids=["e", "b"], embeddings=[[0.5, 0.5, 0.5], [0.0, 0.9, 0.1]], documents=["e", "b2"]),
)
step("after_writes", lambda: col.get(include=["documents", "metadatas"]))
# ... and deletes by id and by filter.
step("delete_ids", lambda: col.delete(ids=["e"]))
step("delete_where", lambda: col.delete(where={"source": "z"}))
step("count_after_delete", col.count)
step("modify", lambda: col.modify(name=NAME + "-renamed", metadata={"team": "b"}))
step("get_renamed", lambda: client.get_collection(NAME + "-renamed", **create))
step("get_missing", lambda: client.get_collection("no-such-collection", **create))
# a collection deleted under an app that still holds it (its record routes name it by id)
gone = client.create_collection(NAME + "-gone", **create)
client.delete_collection(NAME + "-gone")
step("use_deleted", lambda: gone.add(ids=["x"], embeddings=[[1.0, 0.0, 0.0]]))
step("create_taken", lambda: client.create_collection(NAME + "-renamed", **create))
step("delete_collection", lambda: client.delete_collection(NAME + "-renamed"))
step("list_after", lambda: ours(client.list_collections()))
print(json.dumps(out))
