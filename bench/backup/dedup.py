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
chunks, by file, that differ from the copy before. Writes dedup.json and dedup.md.

    .venv/bin/python bench/backup/dedup.py
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import xxhash

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.backup.hold import DIM, collection_ids, seed  # noqa: E402
from tests.backup.helpers import DB, run_chroma  # noqa: E402

CHUNKS = {"1 MiB": 1 << 20, "64 KiB": 64 << 10}
SHARE = 0.01
#: The big collection of hold.py: about 200 MB on disk.
SIZE_MB = 200


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
    return "\n".join(lines) + "\n"


def main() -> None:
    source = seed(Path(tempfile.gettempdir()) / "chromactl-bench-hold", SIZE_MB, 1)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": [],
    }
    for name in ("update", "add", "delete"):
        with tempfile.TemporaryDirectory(prefix="chromactl-bench-dedup-") as tmp:
            results["runs"].append(workload(source, Path(tmp), name))
    (HERE / "dedup.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "dedup.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
