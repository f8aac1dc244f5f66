"""The write hold when the writes go into the big collection.

``run.py`` measures the hold with a writer in a small side collection while the big data
sits still. Real workloads write into their big collections, and Chroma rewrites a
collection's HNSW files in place every ``sync_threshold`` (1000) records, so the files
the hold would have to compare are the large ones. Workloads (384-dim vectors, writer
batches of 50 through the gateway, one online snapshot after another):

  same      one writer adding into the big collection: the common worst case
  several   the same data in 4 collections, writers into 2 of them
  side      one writer into a small side collection, the big one still (run.py's case)
  idle      no writer

Each workload runs with the cut as it is (catch-up before the hold, generations, holds
given back when a segment persisted) and, for ``same``, with the previous cut as the
baseline in the same run (``--baseline``: no catch-up of segment files, everything that
changed compared inside one hold). Reported per snapshot: the hold (what writes waited),
holds given back before it and their time, bytes compared and rewritten inside the hold;
per workload the writer's own latency while snapshots ran (what users feel).

    .venv/bin/python bench/backup/hold.py [--sizes 200,1000] [--rounds 8]

Seeded data directories are kept under ``--cache`` (default: ``chromactl-bench-hold`` in the
system's temporary directory) and copied for each workload. Writes hold.json and hold.md
(hold-big.png with matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.plot import pyplot  # noqa: E402
from tests.backup.helpers import ADMIN, DB, create_collection, free_port, gateway_process, run_chroma  # noqa: E402

from chromactl.backup import GatewayHold, Repository, create_snapshot  # noqa: E402
from chromactl.backup.snapshot import create as snapshot_mod  # noqa: E402
from chromactl.backup.snapshot import cut as cut_policy  # noqa: E402

DIM = 384
BATCH = 50
#: Bytes on disk per record of 384 dims (HNSW element plus its SQLite rows), measured.
BYTES_PER_RECORD = 2000
AUTH = {"Authorization": f"Bearer {ADMIN}"}
#: Inside the hold: waiting for the grant (in-flight writes drain), SQLite's lock, the compare.
#: Seconds the writers run alone before the first snapshot (their latency without one).
QUIET_WINDOW_S = 10.0
STEPS = ("hold_quiet_s", "hold_grant_s", "hold_lock_s", "hold_compare_s", "hold_release_s")


def vectors(rng: random.Random, n: int) -> list[list[float]]:
    return [[rng.random() for _ in range(DIM)] for _ in range(n)]


def seed(cache: Path, size_mb: int, collections: int) -> Path:
    """A data directory of about ``size_mb`` over ``collections`` collections (cached)."""
    data = cache / f"{size_mb}mb-{collections}c"
    if (data / "chroma.sqlite3").exists():
        return data
    tmp = cache / f"{data.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = random.Random(size_mb)
    per = size_mb * 1_000_000 // BYTES_PER_RECORD // collections
    with run_chroma(tmp) as chroma, httpx.Client(timeout=600) as client:
        for c in range(collections):
            cid = create_collection(chroma.url, f"big-{c}")
            for start in range(0, per, 1000):
                n = min(1000, per - start)
                resp = client.post(
                    f"{chroma.url}{DB}/collections/{cid}/add",
                    json={"ids": [f"s{start + i}" for i in range(n)], "embeddings": vectors(rng, n)},
                )
                resp.raise_for_status()
        create_collection(chroma.url, "side")
    tmp.rename(data)
    return data


def collection_ids(data: Path) -> dict[str, str]:
    conn = sqlite3.connect(data / "chroma.sqlite3")
    try:
        return {name: cid for cid, name in conn.execute("SELECT id, name FROM collections")}
    finally:
        conn.close()


@dataclass
class Writer:
    """Adds batches of 50 into one collection through the gateway; keeps each latency."""

    url: str
    collection_id: str
    seed: int
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(self.seed)
        n = 0
        with httpx.Client(timeout=120, headers=AUTH) as client:
            while not self.stop.is_set():
                ids = [f"w{self.seed}-{n + i}" for i in range(BATCH)]
                body = {"ids": ids, "embeddings": vectors(rng, BATCH)}
                n += BATCH
                t = time.perf_counter()
                resp = client.post(f"{self.url}{DB}/collections/{self.collection_id}/add", json=body)
                self.latencies.append((t, time.perf_counter() - t))
                if resp.status_code != 201:
                    self.errors += 1


@contextlib.contextmanager
def writers(url: str, targets: list[str]) -> Iterator[list[Writer]]:
    ws = [Writer(url, cid, seed=i) for i, cid in enumerate(targets)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in ws]
    for t in threads:
        t.start()
    time.sleep(2)  # past the first persist
    try:
        yield ws
    finally:
        for w in ws:
            w.stop.set()
        for t in threads:
            t.join(120)


@contextlib.contextmanager
def baseline_cut() -> Iterator[None]:
    """The previous cut: no catch-up of segment files before the hold, one hold that
    compares everything that changed since the first pass."""
    attempts, catch_up_files = cut_policy.HOLD_ATTEMPTS, snapshot_mod.catch_up_files
    cut_policy.HOLD_ATTEMPTS = 1
    snapshot_mod.catch_up_files = lambda *a, **k: 0  # type: ignore[assignment]
    try:
        yield
    finally:
        cut_policy.HOLD_ATTEMPTS, snapshot_mod.catch_up_files = attempts, catch_up_files


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def workload(source: Path, work: Path, name: str, rounds: int, *, baseline: bool = False) -> dict[str, Any]:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(source, data)
    ids = collection_ids(data)
    bigs = sorted(v for k, v in ids.items() if k.startswith("big-"))
    targets = {"same": bigs[:1], "several": bigs[:2], "side": [ids["side"]], "idle": []}[name]
    snaps: list[dict[str, float]] = []
    windows: list[tuple[float, float]] = []
    with run_chroma(data) as chroma:
        port = free_port()
        with gateway_process(work, chroma.url, port):
            gw = f"http://127.0.0.1:{port}"
            with writers(gw, targets) as ws, baseline_cut() if baseline else contextlib.nullcontext():
                quiet_from = time.perf_counter()
                time.sleep(QUIET_WINDOW_S)  # the writers alone: their latency without snapshots
                quiet = (quiet_from, time.perf_counter())
                for r in range(rounds):
                    repo = Repository(str(work / "repo"))
                    t = time.perf_counter()
                    hold = GatewayHold(gw, ADMIN, timeout_s=60)
                    res = create_snapshot(data, repo, hold, chroma_version="1.5.9")
                    windows.append((t, time.perf_counter()))
                    p = res.phases
                    snaps.append(
                        {
                            "hold_s": res.hold_s,
                            "attempts": p.get("hold_attempts", 1.0),
                            "given_back_s": p.get("hold_given_back_s", 0.0),
                            "checked_bytes": p.get("hold_checked_bytes", 0.0),
                            "rewritten_bytes": float(res.recopied_bytes),
                            "catch_up_bytes": p.get("catch_up_bytes", 0.0),
                            "duration_s": res.duration_s,
                            **{k: v for k, v in p.items() if k in STEPS},
                        }
                    )
                    print(name, "baseline" if baseline else "", r, json.dumps(snaps[-1]), flush=True)
                    shutil.rmtree(work / "repo")
    during = [d for w in ws for (t, d) in w.latencies if any(a <= t <= b for a, b in windows)]
    alone = [d for w in ws for (t, d) in w.latencies if quiet[0] <= t <= quiet[1]]
    holds = [s["hold_s"] for s in snaps]
    out: dict[str, Any] = {
        "workload": name,
        "cut": "baseline" if baseline else "current",
        "data_bytes": sum(f.stat().st_size for f in data.rglob("*") if f.is_file()),
        "snapshots": snaps,
        "hold_p50_s": statistics.median(holds),
        "hold_p99_s": pct(holds, 0.99),
        "hold_max_s": max(holds),
        "given_back_max_s": max(s["given_back_s"] for s in snaps),
        "attempts_max": max(s["attempts"] for s in snaps),
        "writer_errors": sum(w.errors for w in ws),
    }
    if during:
        out["write_p50_s"] = statistics.median(during)
        out["write_p99_s"] = pct(during, 0.99)
        out["write_max_s"] = max(during)
        out["writes"] = len(during)
    if alone:
        out["alone_write_p50_s"] = statistics.median(alone)
        out["alone_write_p99_s"] = pct(alone, 0.99)
    shutil.rmtree(data)
    return out


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Write hold with writes into the big collection",
        "",
        f"{results['machine']}. Writer: batches of {BATCH} x {DIM}-dim records through the gateway, "
        "one online snapshot after another. `hold` is what writes waited for the cut; `given back` "
        "the holds returned before it (each also a wait for writes); `compared`/`rewritten` are "
        "bytes read and copied inside the hold; `write` is the writer's own latency while snapshots "
        "ran, and beside it without snapshots (the writers alone for 10 s first): Chroma's own "
        "HNSW rewrite every 1000 records is in both.",
        "",
        "| data | workload | cut | hold p50 | hold p99 | hold max | given back (max, s) | holds (max) "
        "| compared in hold (max) | rewritten in hold (max) | write p50 | write p99 | write max "
        "| write p99 without snapshots |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        snaps = r["snapshots"]
        mb = r["data_bytes"] / 1e6
        ms = 1000
        lines.append(
            f"| {mb:.0f} MB | {r['workload']} | {r['cut']} | {r['hold_p50_s'] * ms:.0f} ms "
            f"| {r['hold_p99_s'] * ms:.0f} ms | {r['hold_max_s'] * ms:.0f} ms | {r['given_back_max_s']:.3f} "
            f"| {r['attempts_max']:.0f} | {max(s['checked_bytes'] for s in snaps) / 1e6:.1f} MB "
            f"| {max(s['rewritten_bytes'] for s in snaps) / 1e6:.1f} MB "
            + (
                f"| {r['write_p50_s'] * ms:.0f} ms | {r['write_p99_s'] * ms:.0f} ms "
                f"| {r['write_max_s'] * ms:.0f} ms | {r['alone_write_p99_s'] * ms:.0f} ms |"
                if "write_p50_s" in r
                else "| - | - | - | - |"
            )
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any]) -> None:
    plt = pyplot()
    if plt is None:
        return
    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [f"{r['data_bytes'] / 1e6:.0f} MB {r['workload']} {r['cut']}" for r in runs]
    for i, r in enumerate(runs):
        ax.scatter([i] * len(r["snapshots"]), [s["hold_s"] * 1000 for s in r["snapshots"]], s=12)
    ax.axhline(100, color="grey", linestyle="--", label="goal: 100 ms p99")
    ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("hold per snapshot (ms)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "hold-big.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200,1000", help="MB of data, comma-separated")
    parser.add_argument("--rounds", type=int, default=8, help="snapshots per workload")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "chromactl-bench-hold"))
    parser.add_argument("--workloads", default="same,several,side,idle")
    parser.add_argument("--merge", action="store_true", help="keep the other runs already in hold.json")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": [],
    }
    if args.merge and (HERE / "hold.json").exists():
        results["runs"] = json.loads((HERE / "hold.json").read_text())["runs"]
    for size in (int(s) for s in args.sizes.split(",")):
        for name in args.workloads.split(","):
            source = seed(cache, size, 4 if name == "several" else 1)
            variants = [False, True] if name == "same" else [False]
            for baseline in variants:
                with tempfile.TemporaryDirectory(prefix="chromactl-bench-hold-") as tmp:
                    run = workload(source, Path(tmp), name, args.rounds, baseline=baseline)
                key = (size, run["workload"], run["cut"])
                results["runs"] = [
                    r for r in results["runs"] if (r["size_mb"], r["workload"], r["cut"]) != key
                ]
                results["runs"].append({"size_mb": size, **run})
            (HERE / "hold.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "hold.md").write_text(render(results))
    print(render(results))
    plot(results)


if __name__ == "__main__":
    main()
