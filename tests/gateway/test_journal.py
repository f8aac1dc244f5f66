"""The gateway's journal of acknowledged writes (continuous backup's source): what each kind
of write records, and what it does not."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromactl.gateway.journal_writer import Journal
from chromactl.gateway.podlocks import PodLocks
from chromactl.journal import Entry, SpoolReader

from .conftest import ADMIN_TOKEN, token_config
from .helpers import Chroma, RunningGateway, free_port, run_gateway

DB = "/api/v2/tenants/default_tenant/databases/default_database"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def journaled(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> Iterator[tuple[RunningGateway, SpoolReader]]:
    journal = Journal(tmp_path / "journal", "t", chroma.path / "data" / "chroma.sqlite3")
    with run_gateway(token_config(chroma, secrets_dir), journal=journal) as gw:
        yield gw, SpoolReader(tmp_path / "journal")
    journal.close()


def _records(n: int, start: int = 0) -> dict[str, object]:
    ids = [f"r-{i}" for i in range(start, start + n)]
    return {
        "ids": ids,
        "embeddings": [[float(i), 0.5, 0.25] for i in range(start, start + n)],
        "documents": [f"doc {i}" for i in ids],
        "metadatas": [{"grp": i % 2} for i in range(start, start + n)],
    }


def _only(entries: list[Entry], kind: str) -> list[Entry]:
    return [e for e in entries if e.kind == kind]


def test_acknowledged_writes_are_journaled_in_order_and_refused_ones_are_not(
    journaled: tuple[RunningGateway, SpoolReader],
) -> None:
    gw, reader = journaled
    with gw.client(**AUTH) as client:
        created = client.post(f"{DB}/collections", json={"name": "journal-a"}).json()
        cid = created["id"]
        base = f"{DB}/collections/{cid}"
        assert client.post(f"{base}/add", json=_records(4)).is_success
        # A wrong dimension: Chroma refuses it, nothing to replay.
        bad = {"ids": ["x-1"], "embeddings": [[1.0]]}
        assert client.post(f"{base}/add", json=bad).status_code >= 400
        assert client.post(f"{base}/upsert", json=_records(2, start=3)).is_success
        # A delete by filter records the ids it matched.
        assert client.post(f"{base}/delete", json={"where": {"grp": 1}}).is_success
        assert client.delete(f"{DB}/collections/journal-a").is_success
    entries = reader.poll()
    kinds = [(e.kind, e.op) for e in entries]
    assert kinds == [
        ("catalog", "create_collection"),
        ("records", "add"),
        ("records", "upsert"),
        ("records", "delete"),
        ("catalog", "delete_collection"),
    ]
    assert [e.t for e in entries] == sorted(e.t for e in entries)
    create, add, _, delete, drop = entries
    assert create.catalog is not None
    rows = create.catalog["collections"][cid]
    assert rows["collections"][0]["name"] == "journal-a"
    assert {r["scope"] for r in rows["segments"]} == {"METADATA", "VECTOR"}
    assert add.collection == cid and add.json_body()["ids"] == [f"r-{i}" for i in range(4)]
    # r-1 and r-3 (grp 1) existed; r-4 from the upsert has grp 0.
    assert sorted(delete.ids or []) == ["r-1", "r-3"]
    assert drop.catalog is not None and drop.catalog["collections"] == {cid: None}


def test_an_old_clients_writes_are_journaled_as_the_1x_requests_chroma_applied(
    journaled: tuple[RunningGateway, SpoolReader],
) -> None:
    """A 0.4 client's v1 writes (docs/legacy-clients.md) reach the journal translated: the 1.x
    request, without 0.4's empty filters, so that a replay is what Chroma applied."""
    gw, reader = journaled
    with gw.client(**AUTH) as client:
        cid = client.post("/api/v1/collections", json={"name": "journal-v1", "metadata": None}).json()["id"]
        assert client.post(f"/api/v1/collections/{cid}/add", json=_records(4)).is_success
        zero_four = {"ids": None, "where": {"grp": 1}, "where_document": {}}
        assert client.post(f"/api/v1/collections/{cid}/delete", json=zero_four).is_success
        assert client.delete("/api/v1/collections/journal-v1").is_success
    entries = reader.poll()
    assert [(e.kind, e.op) for e in entries] == [
        ("catalog", "create_collection"),
        ("records", "add"),
        ("records", "delete"),
        ("catalog", "delete_collection"),
    ]
    _, add, delete, _ = entries
    assert add.collection == cid and add.json_body()["ids"] == [f"r-{i}" for i in range(4)]
    assert sorted(delete.ids or []) == ["r-1", "r-3"]
    assert "where_document" not in delete.json_body()


def test_a_write_without_an_answer_from_chroma_breaks_the_journal(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    """Chroma unreachable mid-write: whether it applied the write is unknown, so the journal
    says it cannot be replayed past that point."""
    journal = Journal(tmp_path / "journal", "t", chroma.path / "data" / "chroma.sqlite3")
    config = token_config(chroma, secrets_dir)
    config["chroma"] = {"url": f"http://127.0.0.1:{free_port()}"}
    with run_gateway(config, journal=journal) as gw, gw.client(**AUTH) as client:
        resp = client.post(f"{DB}/collections", json={"name": "never-made"})
        assert resp.status_code == 503
        # A read is never journaled, answered or not.
        client.get(f"{DB}/collections")
    journal.close()
    entries = SpoolReader(tmp_path / "journal").poll()
    assert [e.kind for e in entries] == ["break"]
    assert "503" in entries[0].reason


def test_pod_locks_serialize_one_collection_within_and_across_processes(tmp_path: Path) -> None:
    locks = PodLocks(tmp_path / "locks")
    bucket = PodLocks.bucket("c1")
    inside: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with locks.held(bucket):
            inside.append(f"+{name}")
            await asyncio.sleep(seconds)
            inside.append(f"-{name}")

    async def both() -> None:
        await asyncio.gather(hold("a", 0.05), hold("b", 0.0), hold("c", 0.01))

    asyncio.run(both())
    assert inside == ["+a", "-a", "+b", "-b", "+c", "-c"]

    # Another process (another gateway worker) holds the same lock: this one waits for it.
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2])); print('held', flush=True); time.sleep(0.6)",
            str(tmp_path / "locks"),
            str(bucket),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdout.readline().strip() == "held"

    async def timed() -> float:
        start = time.monotonic()
        async with locks.held(bucket):
            return time.monotonic() - start

    waited = asyncio.run(timed())
    other.wait(10)
    assert waited > 0.3, waited
    locks.close()
