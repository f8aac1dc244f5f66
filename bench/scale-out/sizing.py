"""Sizing figures for docs/scale-out.md: memory, disk and query CPU of single-node Chroma as
its collection grows, and what the gateway spends per query in front of it.

For each size (``--sizes``, 384-dim vectors, one collection, Chroma's default HNSW settings):
load the vectors (batches of 1000), stop Chroma, start it again on the same data (so that
memory is what serving needs, not what the writes left behind), query until the index is
in memory, then read

  rss        resident memory of Chroma's process (VmRSS) after the warm-up queries
  disk       bytes of the data directory
  query      n_results=10, one query vector, concurrency 16 for ``--seconds``: CPU time per
             request (user + system, from /proc) of Chroma, and of the gateway (one worker,
             token auth) passing the same queries on, in the same run

The memory per million vectors is the slope of a least-squares line through (size, rss);
the intercept is what an empty Chroma holds. Writes sizing.json, sizing.md and sizing.png here.

    .venv/bin/python bench/scale-out/sizing.py [--sizes 25000,50000,100000,200000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "gateway"))

import cpu  # noqa: E402  (bench/gateway/cpu.py: CPU time of process trees)
import run as base  # noqa: E402  (bench/gateway/run.py: gateway, load generator)
from bench.plot import pyplot  # noqa: E402
from tests.gateway.helpers import run_chroma  # noqa: E402

D = base.D
BATCH = 1000


def load(url: str, count: int, rng: np.random.Generator) -> str:
    with httpx.Client(base_url=url, timeout=300) as c:
        col = c.post(f"{D}/collections", json={"name": "sizing"}).json()
        for start in range(0, count, BATCH):
            n = min(BATCH, count - start)
            body = {
                "ids": [f"v{i}" for i in range(start, start + n)],
                "embeddings": rng.random((n, base.DIM), dtype=np.float32).tolist(),
            }
            c.post(f"{D}/collections/{col['id']}/add", json=body, timeout=300).raise_for_status()
        return str(col["id"])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_size(work: Path, size: int, seconds: float, rng: np.random.Generator) -> dict[str, Any]:
    with run_chroma(work) as chroma:
        cid = load(chroma.url, size, rng)
    queries = [
        json.dumps(
            {"query_embeddings": [rng.random(base.DIM).tolist()], "n_results": 10, "include": ["distances"]}
        ).encode()
        for _ in range(64)
    ]
    path = f"{D}/collections/{cid}/query"
    with run_chroma(work) as chroma:  # the same data directory, a fresh process
        asyncio.run(base.measure(chroma.url, path, queries, 2.0))  # the index into memory
        row: dict[str, Any] = {
            "size": size,
            "rss_bytes": rss_bytes(chroma.process.pid),
            "disk_bytes": dir_bytes(chroma.path / "data"),
        }
        direct = cpu.measure_cpu(chroma.url, path, queries, seconds, chroma.process.pid, None)
        with base.gateway(work, chroma.url, tls=False, client="aiohttp", workers=1) as url:
            via = cpu.measure_cpu(url, path, queries, seconds, chroma.process.pid, base.PIDS[url])
        row |= {
            "chroma_cpu_ms_per_query": direct["chroma_cpu_ms"],
            "direct_rps": direct["rps"],
            "gateway_cpu_ms_per_query": via["proxy_cpu_ms"],
            "chroma_cpu_ms_per_query_via_gateway": via["chroma_cpu_ms"],
            "gateway_rps": via["rps"],
            "errors": direct["errors"] + via["errors"],
        }
    return row


def fit(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(bytes per vector, bytes at zero vectors) of the least-squares line through the rss."""
    slope, intercept = np.polyfit([r["size"] for r in rows], [r["rss_bytes"] for r in rows], 1)
    return float(slope), float(intercept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="25000,50000,100000,200000")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per query case")
    parser.add_argument("--rewrite", action="store_true", help="write md and png again from sizing.json")
    args = parser.parse_args()
    if args.rewrite:
        write(json.loads((HERE / "sizing.json").read_text())["rows"])
        return
    rng = np.random.default_rng(7)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_size(Path(tmp), size, args.seconds, rng))
            print(json.dumps(rows[-1]), flush=True)
    write(rows)


def chroma_version() -> str:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", "import chromadb; print(chromadb.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def write(rows: list[dict[str, Any]]) -> None:
    per_vector, base_rss = fit(rows)
    disk_per_vector = rows[-1]["disk_bytes"] / rows[-1]["size"]
    summary = {
        "rss_bytes_per_million_vectors": per_vector * 1e6,
        "rss_bytes_empty": base_rss,
        "disk_bytes_per_vector": disk_per_vector,
        "raw_vector_bytes": base.DIM * 4,
    }
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Chroma {chroma_version()}"
    (HERE / "sizing.json").write_text(
        json.dumps({"machine": machine, "rows": rows, "summary": summary}, indent=2) + "\n"
    )
    gib = 1024**3
    lines = [
        "# Sizing single-node Chroma, and the gateway in front of it",
        "",
        f"Machine: {machine}. Produced by `bench/scale-out/sizing.py`;",
        "what each figure is, in its docstring. 384-dim float32 vectors, one collection, Chroma's",
        "default HNSW settings; memory read after a restart and warm-up queries; query:",
        "n_results=10 at concurrency 16; CPU time per request from /proc.",
        "",
        "| vectors | Chroma RSS | data directory | Chroma CPU / query | gateway CPU / query"
        " | gateway / Chroma |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['rss_bytes'] / 2**20:,.0f} MiB | {r['disk_bytes'] / 2**20:,.0f} MiB"
            f" | {r['chroma_cpu_ms_per_query']:.2f} ms | {r['gateway_cpu_ms_per_query']:.2f} ms"
            f" | {r['gateway_cpu_ms_per_query'] / r['chroma_cpu_ms_per_query']:.2f} |"
        )
    lines += [
        "",
        f"- **Memory: {per_vector * 1e6 / gib:.2f} GiB per million vectors** (slope of the line"
        " through the RSS;"
        f" {per_vector:,.0f} bytes a vector against {base.DIM * 4:,} bytes of raw float32), plus"
        f" {base_rss / 2**20:,.0f} MiB for an empty Chroma.",
        f"- **Disk: {disk_per_vector:,.0f} bytes per vector** (data directory at"
        f" {rows[-1]['size']:,} vectors).",
        "- Chroma's CPU per query grows slowly with the collection (HNSW search is logarithmic); the",
        "  gateway's does not depend on it.",
    ]
    (HERE / "sizing.md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["size"] / 1000 for r in rows]
    left.plot(sizes, [r["rss_bytes"] / 2**20 for r in rows], "o-", label="Chroma RSS")
    left.plot(sizes, [(base_rss + per_vector * s * 1000) / 2**20 for s in sizes], "--", label="fit")
    left.set_xlabel("thousands of 384-dim vectors")
    left.set_ylabel("MiB")
    left.set_title("Memory after restart and warm-up")
    left.legend()
    right.plot(sizes, [r["chroma_cpu_ms_per_query"] for r in rows], "o-", label="Chroma")
    right.plot(sizes, [r["gateway_cpu_ms_per_query"] for r in rows], "s-", label="gateway (1 worker)")
    right.set_xlabel("thousands of 384-dim vectors")
    right.set_ylabel("CPU ms per query")
    right.set_title("CPU per query (n_results=10)")
    right.legend()
    fig.tight_layout()
    fig.savefig(HERE / "sizing.png", dpi=100)


if __name__ == "__main__":
    main()
