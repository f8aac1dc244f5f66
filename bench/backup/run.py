"""Backup benchmarks: hold time under a writer, snapshot/restore throughput against
``tar | zstd`` of the same directory to the same target, export/import records/s.

Usage: ``.venv/bin/python bench/backup/run.py [--sizes 100,1000] [--rounds 5]``
Writes ``results.json`` and ``results.md`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.backup.helpers import (  # noqa: E402
    DB,
    HoldingProxy,
    Writer,
    create_collection,
    run_chroma,
)

from chromactl.backup import GatewayHold, NoHold, Repository, create_snapshot, restore  # noqa: E402
from chromactl.backup.logical import ChromaApi, export, import_export  # noqa: E402

DIM = 128


def seed_bytes(url: str, target_mb: int) -> tuple[str, int]:
    """Fill one collection with records (vector + ~1 KB document) until the data
    directory reaches about ``target_mb``; returns (collection id, records)."""
    cid = create_collection(url, "bench-static")
    rng = __import__("random").Random(1)
    n = 0
    per_record = DIM * 4 + 1400  # HNSW + SQLite (document, FTS, metadata, log)
    total = target_mb * 1_000_000 // per_record
    with httpx.Client(timeout=120) as client:
        while n < total:
            k = min(1000, total - n)
            body = {
                "ids": [f"s-{i}" for i in range(n, n + k)],
                "embeddings": [[rng.random() for _ in range(DIM)] for _ in range(k)],
                "documents": [f"doc {i} " + "lorem ipsum dolor sit amet " * 36
                              for i in range(n, n + k)],
                "metadatas": [{"i": i, "g": i % 10} for i in range(n, n + k)],
            }
            client.post(f"{url}{DB}/collections/{cid}/add", json=body).raise_for_status()
            n += k
    return cid, n


def pad_static(data: Path, target_mb: int) -> int:
    """Grow the directory to ``target_mb`` with copies of the real segment directory
    under new names (static data Chroma ignores): hold time vs data that does not change."""
    seg = max((p for p in data.iterdir() if p.is_dir()), key=lambda p: du(p))
    added = 0
    while du(data) < target_mb * 1_000_000:
        shutil.copytree(seg, data / str(uuid.uuid4()))
        added += 1
    return added


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True)
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_size(size_mb: int, rounds: int, work: Path) -> dict[str, Any]:
    data = work / "data"
    out: dict[str, Any] = {"size_mb": size_mb}
    with run_chroma(data) as chroma:
        real_mb = min(size_mb, 100)
        static_id, records = seed_bytes(chroma.url, real_mb)
        busy = create_collection(chroma.url, "bench-busy")
        out["records"] = records
        if size_mb > real_mb:
            out["padded_segment_copies"] = pad_static(data, size_mb)
        out["data_bytes"] = du(data)
        out["sqlite_bytes"] = (data / "chroma.sqlite3").stat().st_size

        # hold time under a steady writer (batches of 50 through the holding proxy)
        holds: list[float] = []
        recopied: list[int] = []
        with HoldingProxy(chroma.url) as proxy:
            writer = Writer(proxy.url, busy).start()
            try:
                for r in range(rounds):
                    repo = Repository(str(work / f"hold-repo-{r}"))
                    res = create_snapshot(data, repo, GatewayHold(proxy.url, None),
                                          chroma_version="1.5.9")
                    holds.append(res.hold_s)
                    recopied.append(res.recopied_bytes)
                    shutil.rmtree(work / f"hold-repo-{r}")
            finally:
                writer.stop()
            writes = sum(len(b) for b in writer.acked)
        out["hold_s"] = {"samples": holds, "p50": statistics.median(holds),
                         "p99": pct(holds, 0.99), "max": max(holds)}
        out["hold_recopied_bytes"] = recopied
        out["writer_records_during_bench"] = writes

        # export / import records per second (the static collection)
        if size_mb <= 100:
            exp = Repository(str(work / "export"))
            api = ChromaApi(chroma.url)
            e = export(api, exp, collections=["bench-static"], page_size=1000)
            api_copy = ChromaApi(chroma.url, database="bench-copy")
            i = import_export(exp, api_copy)
            out["export_records_per_s"] = e.records_per_s
            out["import_records_per_s"] = i.records_per_s
            out["export_records"] = e.records
            shutil.rmtree(work / "export")
        del static_id
    # throughput, on the stopped directory, against tar | zstd to the same target
    target = work / "target"
    target.mkdir()
    snap_s, tar_s, restore_s, untar_s = [], [], [], []
    for _ in range(max(1, min(rounds, 3))):
        shutil.rmtree(target)
        target.mkdir()
        subprocess.run("sync", check=True)
        t = time.perf_counter()
        create_snapshot(data, Repository(str(target / "repo")), NoHold(), chroma_version="1.5.9")
        snap_s.append(time.perf_counter() - t)
        subprocess.run("sync", check=True)
        tar_s.append(timed(f"tar -C {data} -cf - . | zstd -3 -T0 -q -o {target}/data.tar.zst"))
        t = time.perf_counter()
        restore(Repository(str(target / "repo")), work / "restored")
        restore_s.append(time.perf_counter() - t)
        shutil.rmtree(work / "restored")
        (work / "untar").mkdir()
        untar_s.append(timed(f"zstd -d -q -c {target}/data.tar.zst | tar -C {work}/untar -xf -"))
        shutil.rmtree(work / "untar")
    mb = out["data_bytes"] / 1e6
    out["snapshot_mb_s"] = mb / min(snap_s)
    out["tar_zstd_mb_s"] = mb / min(tar_s)
    out["snapshot_vs_tar"] = min(tar_s) / min(snap_s)
    out["restore_mb_s"] = mb / min(restore_s)
    out["untar_mb_s"] = mb / min(untar_s)
    out["restore_vs_untar"] = min(untar_s) / min(restore_s)
    return out


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Backup benchmark results",
        "",
        f"Machine: {results['machine']}. Target: local directory. "
        "Writer: one client adding batches of 50 records (dim 16) in a loop through a "
        "write-holding proxy while snapshots are taken.",
        "",
        "| data | sqlite | hold p50 | hold p99 (max of n) | snapshot MB/s | tar\\|zstd MB/s | "
        "ratio | restore MB/s | unzstd\\|untar MB/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        h = r["hold_s"]
        lines.append(
            f"| {r['data_bytes'] / 1e6:.0f} MB | {r['sqlite_bytes'] / 1e6:.0f} MB | "
            f"{h['p50'] * 1000:.0f} ms | {h['p99'] * 1000:.0f} ms (n={len(h['samples'])}) | "
            f"{r['snapshot_mb_s']:.0f} | {r['tar_zstd_mb_s']:.0f} | {r['snapshot_vs_tar']:.2f}x | "
            f"{r['restore_mb_s']:.0f} | {r['untar_mb_s']:.0f} | {r['restore_vs_untar']:.2f}x |"
        )
    for r in results["sizes"]:
        if "export_records_per_s" in r:
            lines += ["", f"Export: {r['export_records_per_s']:.0f} records/s, import: "
                      f"{r['import_records_per_s']:.0f} records/s ({r['export_records']} records, "
                      f"dim {DIM}, ~1 KB documents)."]
    lines += ["", "Raw numbers: `results.json`. Rerun: `make bench`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100", help="MB of real records per run (more is padded)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "sizes": [],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="chromactl-bench-") as tmp:
            r = bench_size(size, args.rounds, Path(tmp))
            print(json.dumps(r), flush=True)
            results["sizes"].append(r)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(render(results))


if __name__ == "__main__":
    main()
