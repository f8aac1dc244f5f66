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

from bench.plot import pyplot  # noqa: E402
from tests.backup.helpers import (  # noqa: E402
    ADMIN,
    DB,
    Writer,
    create_collection,
    free_port,
    gateway_process,
    run_chroma,
)

from chromactl.backup import GatewayHold, NoHold, Repository, create_snapshot, restore  # noqa: E402
from chromactl.backup.recovery.logical import ChromaApi, export, import_export  # noqa: E402

DIM = 128
#: What the ``--data`` directories are, unless ``--data-note`` says otherwise.
DATA_NOTE = "the data directories of `bench/backup/hold.py` (384-dim vectors, no documents)"


#: Bytes on disk per seeded record (dim 128 vector, ~1 KB document): HNSW, and in
#: SQLite the document, its full-text index, metadata and the write log (measured).
ON_DISK_PER_RECORD = 9000
#: At most this many MB of real records; larger sizes are padded with static data.
MAX_REAL_MB = 470


def seed_bytes(url: str, target_mb: int) -> tuple[str, int]:
    """Fill one collection with records (vector + ~1 KB document) until the data
    directory is about ``target_mb`` on disk; returns (collection id, records)."""
    cid = create_collection(url, "bench-static")
    rng = __import__("random").Random(1)
    n = 0
    total = target_mb * 1_000_000 // ON_DISK_PER_RECORD
    with httpx.Client(timeout=120) as client:
        while n < total:
            k = min(1000, total - n)
            body = {
                "ids": [f"s-{i}" for i in range(n, n + k)],
                "embeddings": [[rng.random() for _ in range(DIM)] for _ in range(k)],
                "documents": [f"doc {i} " + "lorem ipsum dolor sit amet " * 36 for i in range(n, n + k)],
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


class NoopHold:
    """An online snapshot without a gateway (nothing writes): measures the online
    code path (staged SQLite, quick_check) for throughput."""

    waited_s = 0.0

    def __enter__(self) -> NoopHold:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bench_size(size_mb: int, rounds: int, hold_rounds: int, work: Path) -> dict[str, Any]:
    data = work / "data"
    out: dict[str, Any] = {"size_mb": size_mb}
    with run_chroma(data) as chroma:
        real_mb = min(size_mb, MAX_REAL_MB)
        _static_id, records = seed_bytes(chroma.url, real_mb)
        busy = create_collection(chroma.url, "bench-busy")
        out["records"] = records
        if size_mb > real_mb:
            out["padded_segment_copies"] = pad_static(data, size_mb)
        out["data_bytes"] = du(data)
        out["sqlite_bytes"] = (data / "chroma.sqlite3").stat().st_size

        # hold time under a steady writer (batches of 50 through the holding proxy)
        holds: list[float] = []
        recopied: list[int] = []
        checked: list[float] = []
        steps: list[dict[str, float]] = []
        port = free_port()
        with gateway_process(work, chroma.url, port):
            gw = f"http://127.0.0.1:{port}"
            writer = Writer(gw, busy, headers={"Authorization": f"Bearer {ADMIN}"}).start()
            try:
                for r in range(hold_rounds):
                    repo = Repository(str(work / f"hold-repo-{r}"))
                    res = create_snapshot(data, repo, GatewayHold(gw, ADMIN), chroma_version="1.5.9")
                    holds.append(res.hold_s)
                    recopied.append(res.recopied_bytes)
                    checked.append(res.phases.get("hold_checked_bytes", 0.0))
                    steps.append({k: v for k, v in res.phases.items() if k.startswith("hold_")})
                    shutil.rmtree(work / f"hold-repo-{r}")
            finally:
                writer.stop()
            writes = sum(len(b) for b in writer.acked)
        out["hold_s"] = {
            "samples": holds,
            "p50": statistics.median(holds),
            "p99": pct(holds, 0.99),
            "max": max(holds),
        }
        out["hold_recopied_bytes"] = recopied
        out["hold_checked_bytes"] = checked
        out["hold_steps_s"] = steps
        out["writer_records_during_bench"] = writes
        out["writer_errors"] = len(writer.errors)

        # export / import records per second (the static collection)
        if "export_records_per_s" not in out and size_mb <= 200:
            exp = Repository(str(work / "export"))
            api = ChromaApi(chroma.url)
            e = export(api, exp, collections=["bench-static"], page_size=1000)
            api_copy = ChromaApi(chroma.url, database="bench-copy")
            i = import_export(exp, api_copy)
            out["export_records_per_s"] = e.records_per_s
            out["import_records_per_s"] = i.records_per_s
            out["export_records"] = e.records
            shutil.rmtree(work / "export")
    out["data_bytes"] = du(data)
    out.update(throughput(data, rounds, work))
    return out


def throughput(data: Path, rounds: int, work: Path) -> dict[str, Any]:
    """Snapshot and restore of the stopped directory ``data`` against tar | zstd to the same
    target, best of ``rounds``."""
    out: dict[str, Any] = {"data_bytes": du(data)}
    target = work / "target"
    target.mkdir()
    times: dict[str, list[float]] = {
        k: [] for k in ("snapshot_offline", "snapshot_online", "tar_zstd", "restore", "untar", "untar_sync")
    }
    for _ in range(rounds):
        for mode, hold in (("snapshot_offline", NoHold()), ("snapshot_online", NoopHold())):
            shutil.rmtree(target)
            target.mkdir()
            subprocess.run("sync", check=True)
            t = time.perf_counter()
            create_snapshot(data, Repository(str(target / "repo")), hold, chroma_version="1.5.9")
            times[mode].append(time.perf_counter() - t)
        subprocess.run("sync", check=True)
        times["tar_zstd"].append(timed(f"tar -C {data} -cf - . | zstd -3 -T0 -q -o {target}/data.tar.zst"))
        subprocess.run("sync", check=True)
        t = time.perf_counter()
        restore(Repository(str(target / "repo")), work / "restored")  # fsyncs every file
        times["restore"].append(time.perf_counter() - t)
        shutil.rmtree(work / "restored")
        for mode, tail in (("untar", ""), ("untar_sync", f" && sync -f {work}")):
            subprocess.run("sync", check=True)
            (work / "untar").mkdir()
            times[mode].append(
                timed(f"zstd -d -q -c {target}/data.tar.zst | tar -C {work}/untar -xf -{tail}")
            )
            shutil.rmtree(work / "untar")
    mb = out["data_bytes"] / 1e6
    best = {k: min(v) for k, v in times.items()}
    out["times_s"] = times
    out["snapshot_mb_s"] = mb / best["snapshot_offline"]
    out["snapshot_online_mb_s"] = mb / best["snapshot_online"]
    out["tar_zstd_mb_s"] = mb / best["tar_zstd"]
    out["snapshot_vs_tar"] = best["tar_zstd"] / best["snapshot_offline"]
    out["snapshot_online_vs_tar"] = best["tar_zstd"] / best["snapshot_online"]
    out["restore_mb_s"] = mb / best["restore"]
    out["untar_mb_s"] = mb / best["untar"]
    out["restore_vs_untar"] = best["untar"] / best["restore"]
    out["restore_vs_untar_sync"] = best["untar_sync"] / best["restore"]
    return out


def throughput_row(r: dict[str, Any]) -> str:
    b = {k: min(v) for k, v in r["times_s"].items()}
    mb = r["data_bytes"] / 1e6
    return (
        f"| {mb:.0f} MB | {mb / b['snapshot_offline']:.0f} MB/s | "
        f"{mb / b['snapshot_online']:.0f} MB/s | {mb / b['tar_zstd']:.0f} MB/s | "
        f"{r['snapshot_vs_tar']:.2f}x | {r['snapshot_online_vs_tar']:.2f}x | "
        f"{mb / b['restore']:.0f} MB/s | {mb / b['untar']:.0f} MB/s | "
        f"{r['restore_vs_untar']:.2f}x | {mb / b['untar_sync']:.0f} MB/s | "
        f"{r['restore_vs_untar_sync']:.2f}x |"
    )


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Backup benchmark results",
        "",
        f"Machine: {results['machine']}. 1-minute load average at the start: "
        f"{results['load_start']:.2f}, at the end: {results['load_end']:.2f}. "
        "Target: local directory on the same disk.",
        "",
        "## Write hold under a steady writer",
        "",
        "One client adds batches of 50 records (dim 16) in a loop through the gateway "
        "(`chromactl gateway`, its own process) while snapshots are taken back to back "
        "through its hold API; `hold` is from the hold request to the end of its release "
        "(new writes wait for all of it).",
        "",
        "| data on disk | sqlite | real records | snapshots | hold p50 | hold p99 | hold max | "
        "compared in hold (p50) | rewritten in hold (p50) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sizes"]:
        h = r["hold_s"]
        lines.append(
            f"| {r['data_bytes'] / 1e6:.0f} MB | {r['sqlite_bytes'] / 1e6:.0f} MB | "
            f"{r['records']} | {len(h['samples'])} | {h['p50'] * 1000:.0f} ms | "
            f"{h['p99'] * 1000:.0f} ms | {h['max'] * 1000:.0f} ms | "
            f"{statistics.median(r['hold_checked_bytes']) / 1e6:.0f} MB | "
            f"{statistics.median(r['hold_recopied_bytes']) / 1e6:.1f} MB |"
        )
    lines += [
        "",
        "Where the hold goes (median per step): grant = the hold request until in-flight "
        "writes drained; lock = SQLite read lock; compare = hash changed files, rewrite "
        "changed chunks; release = the release request.",
        "",
    ]
    for r in results["sizes"]:
        med = {
            k: statistics.median(s[k] for s in r["hold_steps_s"]) * 1000
            for k in ("hold_grant_s", "hold_lock_s", "hold_compare_s", "hold_release_s")
        }
        lines.append(
            f"- {r['data_bytes'] / 1e6:.0f} MB: grant {med['hold_grant_s']:.0f} ms, "
            f"lock {med['hold_lock_s']:.1f} ms, compare {med['hold_compare_s']:.0f} ms, "
            f"release {med['hold_release_s']:.0f} ms"
        )
    lines += [
        "",
        "## Throughput against `tar | zstd` (same directory, same target, same run)",
        "",
        "Best of the rounds. Snapshot offline: `backup create --offline`; online: the "
        "online path (SQLite staged, quick_check) with no writer. Baselines: "
        "`tar -cf - | zstd -3 -T0` and `zstd -d | tar -x` (restore fsyncs every file, so "
        "`... && sync` is shown too).",
        "",
        "| data | snapshot offline | online | tar\\|zstd | offline ratio | online ratio | "
        "restore | zstd -d\\|tar -x | ratio | with sync | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [throughput_row(r) for r in results["sizes"]]
    if results.get("format3"):
        lines += [
            "",
            "### Format 3 (content-addressed chunks)",
            "",
            "The rows above are from format 2 (one object per file). Format 3 stores each 1 MiB "
            "chunk as its own object (`chunks/`), fsynced and renamed into place on a local "
            f"target. Measured on {results['format3_machine']}, with `run.py --data`, into an "
            "empty repository (every chunk uploaded), on "
            f"{results.get('format3_data', DATA_NOTE)}:",
            "",
            "| data | snapshot offline | online | tar\\|zstd | offline ratio | online ratio | "
            "restore | zstd -d\\|tar -x | ratio | with sync | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *(throughput_row(r) for r in results["format3"]),
        ]
    for r in results["sizes"]:
        if "export_records_per_s" in r:
            lines += [
                "",
                f"Export: {r['export_records_per_s']:.0f} records/s, import: "
                f"{r['import_records_per_s']:.0f} records/s ({r['export_records']} records, "
                f"dim {DIM}, ~1 KB documents).",
            ]
    lines += [
        "",
        "![hold](hold.png) ![throughput](throughput.png)",
        "",
        "Raw numbers: `results.json`. Rerun: `make bench`.",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any]) -> None:
    plt = pyplot()
    if plt is None:
        return

    sizes = results["sizes"]
    labels = [f"{r['data_bytes'] / 1e6:.0f} MB" for r in sizes]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(sizes):
        ms = [s * 1000 for s in r["hold_s"]["samples"]]
        ax.scatter([i] * len(ms), ms, alpha=0.5, color="tab:blue")
    ax.plot(range(len(sizes)), [r["hold_s"]["p50"] * 1000 for r in sizes], "o-", label="p50")
    ax.plot(range(len(sizes)), [r["hold_s"]["p99"] * 1000 for r in sizes], "s--", label="p99")
    ax.axhline(100, color="red", linestyle=":", label="goal 100 ms")
    ax.set_xticks(range(len(sizes)), labels)
    ax.set_xlabel("data directory")
    ax.set_ylabel("write hold (ms)")
    ax.set_title("Write hold under a steady writer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "hold.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    keys = [
        ("snapshot_vs_tar", "snapshot offline / tar|zstd"),
        ("snapshot_online_vs_tar", "snapshot online / tar|zstd"),
        ("restore_vs_untar", "restore / zstd -d|tar -x"),
        ("restore_vs_untar_sync", "restore / (... && sync)"),
    ]
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        ax.bar([i + k * width for i in range(len(sizes))], [r[key] for r in sizes], width, label=label)
    ax.axhline(0.8, color="red", linestyle=":", label="goal 0.8x")
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(sizes))], labels)
    ax.set_ylabel("throughput ratio")
    ax.set_title("Throughput against tar | zstd, same run")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "throughput.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes",
        default="100,1000",
        help="MB on disk per run (real records "
        f"up to {MAX_REAL_MB} MB, the rest padded with static segment copies)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--hold-rounds", type=int, default=12, help="snapshots under a writer")
    parser.add_argument(
        "--data",
        help="comma-separated stopped data directories: measure only snapshot/restore throughput "
        "on them (no seeding, hold or export) into results.json's format3 rows",
    )
    parser.add_argument("--data-note", default=DATA_NOTE, help="what the --data directories are (results.md)")
    args = parser.parse_args()
    if args.data:
        results = json.loads((HERE / "results.json").read_text())
        results["format3_machine"] = (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f} at the start"
        )
        results["format3_data"] = args.data_note
        results["format3"] = []
        for data in args.data.split(","):
            with tempfile.TemporaryDirectory(prefix="chromactl-bench-") as tmp:
                r = throughput(Path(data), args.rounds, Path(tmp))
                print(json.dumps({k: v for k, v in r.items() if k != "times_s"}), flush=True)
                results["format3"].append(r)
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "results.md").write_text(render(results))
        return
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_start": os.getloadavg()[0],
        "sizes": [],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="chromactl-bench-") as tmp:
            r = bench_size(size, args.rounds, args.hold_rounds, Path(tmp))
            print(json.dumps({k: v for k, v in r.items() if k != "times_s"}), flush=True)
            results["sizes"].append(r)
    results["load_end"] = os.getloadavg()[0]
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(render(results))
    plot(results)


if __name__ == "__main__":
    main()
