"""A writer for continuous backup tests, and the model of what Chroma holds after its writes.

One thread sends a seeded, random sequence of writes through the gateway, one at a time:
adds, updates (with and without a new embedding), upserts (new and existing ids), deletes
by id and by filter, into several collections, with a collection created and one deleted
along the way. Every acknowledged write is kept with the time it was sent and answered; the
model replays any prefix of them.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DIM = 8
#: Every this many writes, the writer pauses, so that a point in time falls between writes.
PAUSE_EVERY = 12
PAUSE_S = 0.4

Record = tuple[bytes, str, dict[str, Any]]
State = dict[str, dict[str, Record]]


def f32(values: list[float]) -> list[float]:
    """Values a float32 holds exactly (what Chroma stores)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def vector_bytes(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


@dataclass
class Op:
    kind: str  # add | update | upsert | delete | delete_where | create | drop
    collection: str
    body: dict[str, Any] = field(default_factory=dict)
    sent: float = 0.0
    acked: float = 0.0


def apply(state: State, op: Op) -> None:
    """What Chroma does with one acknowledged write."""
    if op.kind == "create":
        state.setdefault(op.collection, {})
        return
    if op.kind == "drop":
        state.pop(op.collection, None)
        return
    records = state[op.collection]
    body = op.body
    if op.kind == "delete":
        for rid in body["ids"]:
            records.pop(rid, None)
        return
    if op.kind == "delete_where":
        grp = body["where"]["grp"]
        for rid in [r for r, rec in records.items() if rec[2]["grp"] == grp]:
            del records[rid]
        return
    for i, rid in enumerate(body["ids"]):
        emb = body.get("embeddings")
        meta = body["metadatas"][i]
        doc = body["documents"][i]
        if op.kind == "update":
            if rid not in records:
                continue
            old = records[rid]
            records[rid] = (vector_bytes(emb[i]) if emb else old[0], doc, {**old[2], **meta})
        elif op.kind == "upsert" and rid in records:
            old = records[rid]
            records[rid] = (vector_bytes(emb[i]), doc, {**old[2], **meta})
        else:
            records.setdefault(rid, (vector_bytes(emb[i]), doc, dict(meta)))


def model(initial: list[str], ops: list[Op], k: int) -> State:
    """What Chroma holds after the first ``k`` writes, from empty ``initial`` collections."""
    state: State = {name: {} for name in initial}
    for op in ops[:k]:
        apply(state, op)
    return state


class Workload:
    """The writer thread; ``ops`` are the acknowledged writes in order."""

    def __init__(self, url: str, headers: dict[str, str], collections: dict[str, str], seed: int = 7) -> None:
        self.url = url
        self.headers = headers
        #: name -> id of the collections written to.
        self.ids = dict(collections)
        self.rng = random.Random(seed)
        self.ops: list[Op] = []
        self.errors: list[str] = []
        self.initial = sorted(collections)
        self.state: State = {name: {} for name in collections}
        self._n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Workload:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _record(self, rid: str) -> tuple[list[float], str, dict[str, Any]]:
        vec = f32([self.rng.uniform(-1, 1) for _ in range(DIM)])
        return vec, f"doc {rid} v{self.rng.randrange(1000)}", {"grp": self.rng.randrange(6), "v": self._n}

    def _next(self) -> Op:
        self._n += 1
        if self._n == 40:
            return Op("create", "late")
        if self._n == 90:
            return Op("drop", "gamma")
        name = self.rng.choice(sorted(self.state))
        live = sorted(self.state[name])
        roll = self.rng.random()
        if roll < 0.4 or len(live) < 10:
            ids = [f"{name}-{self._n}-{i}" for i in range(self.rng.randrange(1, 40))]
            kind = "add"
        elif roll < 0.55:
            ids = self.rng.sample(live, min(len(live), 5))
            kind = "update"
        elif roll < 0.75:
            ids = [*self.rng.sample(live, 3), f"{name}-{self._n}-u"]
            kind = "upsert"
        elif roll < 0.92:
            return Op("delete", name, {"ids": self.rng.sample(live, 3)})
        else:
            return Op("delete_where", name, {"where": {"grp": self.rng.randrange(6)}})
        recs = [self._record(r) for r in ids]
        body: dict[str, Any] = {
            "ids": ids,
            "documents": [r[1] for r in recs],
            "metadatas": [r[2] for r in recs],
        }
        if kind != "update" or self.rng.random() < 0.5:
            body["embeddings"] = [r[0] for r in recs]
        return Op(kind, name, body)

    def _send(self, client: httpx.Client, op: Op) -> None:
        if op.kind == "create":
            resp = client.post(f"{self.url}{DB}/collections", json={"name": op.collection})
            resp.raise_for_status()
            self.ids[op.collection] = resp.json()["id"]
            return
        if op.kind == "drop":
            client.delete(f"{self.url}{DB}/collections/{op.collection}").raise_for_status()
            return
        path = {"delete_where": "delete"}.get(op.kind, op.kind)
        resp = client.post(f"{self.url}{DB}/collections/{self.ids[op.collection]}/{path}", json=op.body)
        resp.raise_for_status()

    def _run(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as client:
            while not self._stop.is_set():
                op = self._next()
                op.sent = time.time()
                try:
                    self._send(client, op)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{op.kind} {op.collection}: {exc}")
                    return
                op.acked = time.time()
                self.ops.append(op)
                apply(self.state, op)
                if self._n % PAUSE_EVERY == 0:
                    time.sleep(PAUSE_S)


def read_state(url: str, ids: dict[str, str]) -> State:
    """What a Chroma holds in the given collections (by name), and which of them exist."""
    state: State = {}
    with httpx.Client(timeout=60) as client:
        listed = client.get(f"{url}{DB}/collections", params={"limit": 1000}).json()
        for coll in listed:
            got = client.post(
                f"{url}{DB}/collections/{coll['id']}/get",
                json={"include": ["embeddings", "documents", "metadatas"]},
            ).json()
            state[coll["name"]] = {
                rid: (vector_bytes(emb), doc, meta)
                for rid, emb, doc, meta in zip(
                    got["ids"], got["embeddings"], got["documents"], got["metadatas"], strict=True
                )
            }
    return state


def nearest(state: State, name: str, query: list[float], k: int = 3) -> list[str]:
    """Exact nearest neighbours (L2) in the model."""
    records = state[name]

    def dist(rid: str) -> float:
        vec = struct.unpack(f"<{DIM}f", records[rid][0])
        return sum((a - b) ** 2 for a, b in zip(vec, query, strict=True))

    return sorted(records, key=dist)[:k]
