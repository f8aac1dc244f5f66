"""What content-addressed chunks would save: the share of a data directory's chunks that change
when 1 % of its records change.

A repository that stores each chunk once (by its hash) uploads, for the next snapshot, only
the chunks that changed. How many that is depends on where Chroma writes. Workloads, on the
big collection of ``hold.py`` (384-dim vectors, about 200 MB on disk), each from the same
copy of the directory, through Chroma's HTTP API, then a clean stop:

  update   1 % of the records get new embeddings (``update``): the common re-embedding job
  add      1 % more records (``add``): steady growth
  delete   1 % of the records deleted

Reported per chunk size (1 MiB, the engine's frame; 64 KiB for comparison): the share of
chunks, by file, that differ from the copy before.

Then the real figure of the content-addressed repository (format 3): the bytes the second
snapshot uploads after 1 % of the records got new embeddings (``update``), measured by the
backup itself (``BackupResult.uploaded_bytes``), for

  worst    one big collection (about 1 GB on disk), the updates spread over it
  common   four collections (about 200 MB), the same number of updates (1 % of all records)
           landing in one of them

and, for comparison, the bytes continuous backup's journal ships for the same updates: the
request bodies, appended to a spool and shipped as segments by the real shipper.

Writes dedup.json and dedup.md.

    .venv/bin/python bench/backup/dedup.py [--only format3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import xxhash
from prometheus_client import CollectorRegistry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.backup.hold import DIM, collection_ids, seed  # noqa: E402
from tests.backup.helpers import DB, run_chroma  # noqa: E402

from chromactl.backup import NoHold, Repository, create_snapshot  # noqa: E402
from chromactl.backup.continuous.shipper import Shipper  # noqa: E402
from chromactl.backup.continuous.timeline import Timeline  # noqa: E402
from chromactl.backup.metrics import JournalMetrics  # noqa: E402
from chromactl.journal import Spool  # noqa: E402

CHUNKS = {"1 MiB": 1 << 20, "64 KiB": 64 << 10}
SHARE = 0.01
#: The big collection of hold.py: about 200 MB on disk.
SIZE_MB = 200
#: Format 3 cases: (name, size in MB, collections).
CASES = (("worst", 1000, 1), ("common", 200, 4))


def digests(data: Path, size: int) -> dict[str, list[bytes]]:
    out = {}
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        with open(path, "rb") as fh:
            out[str(path.relative_to(data))] = [
                xxhash.xxh3_128_digest(b) for b in iter(lambda: fh.read(size), b"")
            ]
    return out


def kind(rel: str) -> str:
    return rel if rel == "chroma.sqlite3" else rel.split("/", 1)[-1]


def changed(before: dict[str, list[bytes]], after: dict[str, list[bytes]]) -> dict[str, tuple[int, int]]:
    """Per kind of file: (chunks that differ from any chunk before, chunks after)."""
    known = {d for ds in before.values() for d in ds}
    out: dict[str, list[int]] = {}
    for rel, ds in after.items():
        counts = out.setdefault(kind(rel), [0, 0])
        counts[0] += sum(1 for d in ds if d not in known)
        counts[1] += len(ds)
    return {k: (v[0], v[1]) for k, v in out.items()}


def workload(source: Path, work: Path, name: str) -> dict[str, Any]:
    data = work / "data"
    shutil.copytree(source, data)
    before = {label: digests(data, size) for label, size in CHUNKS.items()}
    cid = collection_ids(data)["big-0"]
    rng = random.Random(7)
    with run_chroma(data) as chroma, httpx.Client(timeout=600) as client:
        base = f"{chroma.url}{DB}/collections/{cid}"
        count = int(client.get(f"{base}/count").json())
        n = int(count * SHARE)
        for start in range(0, n, 500):
            k = min(500, n - start)
            if name == "add":
                ids = [f"new-{start + i}" for i in range(k)]
                body: dict[str, Any] = {
                    "ids": ids,
                    "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids],
                }
                client.post(f"{base}/add", json=body).raise_for_status()
                continue
            ids = [f"s{rng.randrange(count)}" for _ in range(k)]
            if name == "update":
                body = {"ids": ids, "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids]}
                client.post(f"{base}/update", json=body).raise_for_status()
            else:
                client.post(f"{base}/delete", json={"ids": ids}).raise_for_status()
    result: dict[str, Any] = {"workload": name, "records": count, "changed_records": n, "chunks": {}}
    for label, size in CHUNKS.items():
        per_kind = changed(before[label], digests(data, size))
        new = sum(c for c, _ in per_kind.values())
        total = sum(t for _, t in per_kind.values())
        result["chunks"][label] = {"new": new, "total": total, "by_file": per_kind}
    return result


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def record_count(data: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(data / "chroma.sqlite3")
    try:
        return int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    finally:
        conn.close()


def journal_bytes(work: Path, bodies: list[tuple[str, bytes]]) -> int:
    """What continuous backup ships for these requests: entries in a spool, segments shipped
    to a target by the shipper (zstd), measured on disk."""
    spool = Spool(work / "spool", "w0")
    t0 = 1_000_000.0
    for i, (collection, body) in enumerate(bodies):
        spool.append(t0 + i * 0.001, "records", op="update", collection=collection, body=body)
    target = Repository(str(work / "journal-target"))
    shipper = Shipper(
        work / "spool",
        Timeline(target),
        JournalMetrics(CollectorRegistry(), 5.0),
        request_base=lambda: None,
        last_cut=lambda: None,
        clock=lambda: t0 + 3600,
    )
    shipper.head.started = t0 - 1
    shipper.cycle(final=True)
    return du(work / "journal-target" / "journal")


def format3(source: Path, work: Path, case: str, collections: int) -> dict[str, Any]:
    """Two snapshots into a format-3 repository with 1 % of all records updated between them."""
    data = work / "data"
    shutil.copytree(source, data)
    repo = Repository(str(work / "repo"))
    t = time.perf_counter()
    first = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    first_s = time.perf_counter() - t
    records = record_count(data)
    n = int(records * SHARE)
    cid = collection_ids(data)["big-0"]
    rng = random.Random(11)
    bodies: list[tuple[str, bytes]] = []
    with run_chroma(data) as chroma, httpx.Client(timeout=600) as client:
        base = f"{chroma.url}{DB}/collections/{cid}"
        in_collection = int(client.get(f"{base}/count").json())
        for start in range(0, n, 500):
            k = min(500, n - start)
            ids = [f"s{rng.randrange(in_collection)}" for _ in range(k)]
            body = json.dumps({"ids": ids, "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids]})
            resp = client.post(f"{base}/update", content=body, headers={"content-type": "application/json"})
            resp.raise_for_status()
            bodies.append((cid, body.encode()))
    t = time.perf_counter()
    second = create_snapshot(data, repo, NoHold(), chroma_version="1.5.9")
    second_s = time.perf_counter() - t
    manifest = repo.read_manifest(str(second.snapshot_id))
    return {
        "case": case,
        "collections": collections,
        "data_bytes": du(data),
        "records": records,
        "changed_records": n,
        "first_uploaded_bytes": first.uploaded_bytes,
        "first_s": first_s,
        "second_uploaded_bytes": second.uploaded_bytes,
        "second_uploaded_chunks": second.uploaded_chunks,
        "second_chunks": sum(len(f.chunks or ()) for f in manifest.files),
        "second_s": second_s,
        "stored_bytes": sum(p.stat().st_size for p in (work / "repo" / "chunks").rglob("*") if p.is_file()),
        "journal_bytes": journal_bytes(work, bodies),
        "request_bytes": sum(len(b) for _, b in bodies),
    }


def render_format3(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Format 3: bytes the second snapshot uploads",
        "",
        "Two offline snapshots into a local format-3 repository, 1 % of all records updated "
        "(new embeddings) between them through Chroma's API, then a clean stop. `uploaded` is "
        "counted by the backup (`uploaded_bytes`: compressed chunks the store lacked). Journal: "
        "the same update requests shipped by continuous backup (zstd segments).",
        "",
        "| case | data | records (changed) | first snapshot uploads | second uploads | share of data "
        "| chunks new / all | journal ships | journal / second |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['case']}: {r['collections']} collection(s) | {r['data_bytes'] / 1e6:.0f} MB | "
            f"{r['records']} ({r['changed_records']}) | {r['first_uploaded_bytes'] / 1e6:.1f} MB | "
            f"{r['second_uploaded_bytes'] / 1e6:.1f} MB | "
            f"{r['second_uploaded_bytes'] / r['data_bytes']:.1%} | "
            f"{r['second_uploaded_chunks']} / {r['second_chunks']} | {r['journal_bytes'] / 1e6:.2f} MB | "
            f"{r['journal_bytes'] / max(1, r['second_uploaded_bytes']):.1%} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Chunks that change when 1 % of the records change",
        "",
        f"Machine: {results['machine']}. Produced by `bench/backup/dedup.py`; workloads in its docstring. "
        "A chunk counts as new when no chunk of the directory before has its hash.",
        "",
        "| workload | chunk | new chunks | of | share | by file (new / all) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        for label, c in r["chunks"].items():
            files = ", ".join(f"{k} {n}/{t}" for k, (n, t) in sorted(c["by_file"].items()))
            lines.append(
                f"| {r['workload']} ({r['changed_records']} of {r['records']}) | {label} | {c['new']} | "
                f"{c['total']} | {c['new'] / c['total']:.1%} | {files} |"
            )
    if results.get("format3"):
        lines += render_format3(results["format3"])
    if results.get("notes"):
        lines += ["", *results["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["chunks", "format3"], help="one part (the other is kept)")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "chromactl-bench-hold"
    old = json.loads((HERE / "dedup.json").read_text()) if (HERE / "dedup.json").exists() else {}
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": old.get("runs", []) if args.only == "format3" else [],
        "format3": old.get("format3", []) if args.only == "chunks" else [],
        "notes": old.get("notes", []),
    }
    if args.only != "format3":
        source = seed(cache, SIZE_MB, 1)
        for name in ("update", "add", "delete"):
            with tempfile.TemporaryDirectory(prefix="chromactl-bench-dedup-") as tmp:
                results["runs"].append(workload(source, Path(tmp), name))
    if args.only != "chunks":
        for case, size_mb, collections in CASES:
            source = seed(cache, size_mb, collections)
            with tempfile.TemporaryDirectory(prefix="chromactl-bench-dedup-") as tmp:
                run = format3(source, Path(tmp), case, collections)
                print(json.dumps(run), flush=True)
                results["format3"].append(run)
    (HERE / "dedup.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "dedup.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
