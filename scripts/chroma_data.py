"""Write a known collection to a Chroma server, or check that it is still there (stdlib only).

    python3 scripts/chroma_data.py write --url URL [--token-file F] [--collection NAME] [--records N]
    python3 scripts/chroma_data.py check --url URL [--token-file F] [--collection NAME] [--records N]

The records are derived from their index (ids, documents, embeddings, metadata), so `check`
compares every field of what it reads back with what `write` wrote: the backup → restore round
trip of the kind workflow (scripts/kind.sh) uses it before the backup and after the restore.
Talks HTTP API v2 (Chroma 1.x and 0.6), through the chart's gateway when a token is given.
Exit status 0 when the data is intact, 1 with what differs otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DIM = 8


class ChromaError(Exception):
    pass


def record(i: int) -> tuple[str, str, list[float], dict[str, Any]]:
    embedding = [round(math.sin(i * (d + 1)), 6) for d in range(DIM)]
    return f"id-{i:05d}", f"document {i}", embedding, {"index": i, "parity": "even" if i % 2 == 0 else "odd"}


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ChromaError(f"{method} {path}: HTTP {exc.code} {detail}") from exc
        except urllib.error.URLError as exc:
            raise ChromaError(f"{method} {path}: {exc.reason}") from exc
        return json.loads(payload) if payload else None

    def collection_id(self, name: str, create: bool) -> str:
        if create:
            return self.call("POST", f"{DB}/collections", {"name": name, "get_or_create": True})["id"]
        return self.call("GET", f"{DB}/collections/{name}")["id"]


def write(client: Client, name: str, records: int) -> None:
    cid = client.collection_id(name, create=True)
    batch = [record(i) for i in range(records)]
    client.call(
        "POST",
        f"{DB}/collections/{cid}/upsert",
        {
            "ids": [r[0] for r in batch],
            "documents": [r[1] for r in batch],
            "embeddings": [r[2] for r in batch],
            "metadatas": [r[3] for r in batch],
        },
    )
    count = client.call("GET", f"{DB}/collections/{cid}/count")
    if count != records:
        raise ChromaError(f"wrote {records} records but the collection counts {count}")


def check(client: Client, name: str, records: int) -> list[str]:
    cid = client.collection_id(name, create=False)
    problems = []
    count = client.call("GET", f"{DB}/collections/{cid}/count")
    if count != records:
        problems.append(f"{name}: {count} records, expected {records}")
    got = client.call(
        "POST",
        f"{DB}/collections/{cid}/get",
        {
            "include": ["documents", "embeddings", "metadatas"],
            "limit": records + 1,
        },
    )
    found = {
        rid: (doc, emb, meta)
        for rid, doc, emb, meta in zip(
            got["ids"], got["documents"], got["embeddings"], got["metadatas"], strict=True
        )
    }
    for i in range(records):
        rid, doc, emb, meta = record(i)
        if rid not in found:
            problems.append(f"{rid} is missing")
            continue
        got_doc, got_emb, got_meta = found[rid]
        close = all(abs(a - b) <= 1e-5 for a, b in zip(got_emb, emb, strict=True))
        if got_doc != doc or got_meta != meta or not close:
            problems.append(f"{rid} differs: {got_doc!r} {got_meta!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", type=Path, help="file holding the gateway token")
    parser.add_argument("--collection", default="kind-round-trip")
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    client = Client(args.url, token)
    try:
        if args.action == "write":
            write(client, args.collection, args.records)
            print(f"wrote {args.records} records to {args.collection}")
            return 0
        problems = check(client, args.collection, args.records)
    except ChromaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems[:20]:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.collection}: all {args.records} records intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
