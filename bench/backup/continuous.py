"""Continuous backup: how far behind the journal is, what it costs the pod, how long a
restore to a point in time takes.

Workloads (384-dim vectors, the big collection of about 200 MB):

  steady   one client adding batches of 50 into the big collection through the gateway,
           paced at --rate requests per second for --seconds (a service ingesting all day);
           run with continuous backup off (the baseline), on with a local target, and on
           with the S3 API server (moto) as the target.
  replay   a base snapshot of the big collection plus a journal of N writes of 10 records
           into it (N from --journal); restore to ``latest`` and start Chroma on the result,
           against restoring the base alone.

Reported for ``steady``: the shipping lag of every journal entry (when its segment first shows
up in a listing of the target, every 0.1 s, minus when Chroma answered the write),
the gateway's CPU per write as a ratio to the baseline run, the pod's CPU (gateway and Chroma)
per write as a ratio, and the writer's latency. For ``replay``: the restore's own time (fetch,
verify, replay) and the time Chroma takes at its first start to apply the replayed writes, as
ratios to the base alone.

    .venv/bin/python bench/backup/continuous.py [--seconds 30] [--rate 10] [--journal 0,500,2000,8000]

Writes continuous.json and continuous.md (continuous.png with matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.backup.hold import collection_ids, seed, vectors  # noqa: E402
from bench.plot import pyplot  # noqa: E402
from tests.backup.helpers import (  # noqa: E402
    ADMIN,
    DB,
    free_port,
    gateway_process,
    make_bucket,
    moto_s3,
    run_chroma,
)

from chromactl.backup import NoHold, Repository, create_snapshot, restore  # noqa: E402
from chromactl.backup.continuous.shipper import Shipper  # noqa: E402
from chromactl.backup.continuous.timeline import Timeline, decode_segment  # noqa: E402
from chromactl.backup.metrics import JournalMetrics  # noqa: E402
from chromactl.journal import Spool  # noqa: E402

AUTH = {"Authorization": f"Bearer {ADMIN}"}
BATCH = 50
SIZE_MB = 200
TICK = os.sysconf("SC_CLK_TCK")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def cpu_s(pid: int) -> float:
    """User and system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def steady(source: Path, work: Path, mode: str, seconds: float, rate: float) -> dict[str, Any]:
    """One ``steady`` run: ``off``, ``local`` or ``s3``."""
    data = work / "data"
    shutil.copytree(source, data)
    big = collection_ids(data)["big-0"]
    target = str(work / "target")
    env: dict[str, str] = {}
    extra = ""
    endpoint_ctx = moto_s3() if mode == "s3" else None
    endpoint = endpoint_ctx.__enter__() if endpoint_ctx else None
    try:
        if endpoint is not None:
            bucket = f"b-{uuid.uuid4().hex[:10]}"
            make_bucket(endpoint, bucket)
            target = f"s3://{bucket}/chroma"
            env = S3_ENV
            os.environ.update(S3_ENV)
        if mode != "off":
            extra = f"backup:\n  target: {target}\n  continuous:\n    enabled: true\n"
            if endpoint:
                extra += f"  endpoint_url: {endpoint}\n"
        port = free_port()
        with (
            run_chroma(data) as chroma,
            gateway_process(work, chroma.url, port, persist_path=data, extra=extra, env=env) as gateway,
        ):
            url = f"http://127.0.0.1:{port}"
            if mode != "off":
                # the base snapshot the pod takes as it starts, before measuring
                repo = Repository(target, {"endpoint_url": endpoint} if endpoint else None)
                deadline = time.monotonic() + 300
                while not any(s.manifest and s.manifest.cut_at for s in repo.complete()):
                    assert time.monotonic() < deadline, "no base snapshot"
                    time.sleep(0.5)
            lags: list[float] = []
            latencies: list[float] = []
            rng = random.Random(1)

            watcher = SegmentWatcher(target, endpoint) if mode != "off" else None
            gw0, ch0 = cpu_s(gateway.pid), cpu_s(chroma.proc.pid)
            start = time.monotonic()
            writes = 0
            with httpx.Client(timeout=120, headers=AUTH) as client:
                while time.monotonic() - start < seconds:
                    due = start + writes / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    ids = [f"c{writes}-{i}" for i in range(BATCH)]
                    t = time.perf_counter()
                    resp = client.post(
                        f"{url}{DB}/collections/{big}/add",
                        json={"ids": ids, "embeddings": vectors(rng, BATCH)},
                    )
                    latencies.append(time.perf_counter() - t)
                    resp.raise_for_status()
                    writes += 1
            gw_cpu, ch_cpu = cpu_s(gateway.pid) - gw0, cpu_s(chroma.proc.pid) - ch0
            time.sleep(3)  # the last entries ship
            if watcher is not None:
                lags = watcher.lags()
        return {
            "mode": mode,
            "writes": writes,
            "seconds": seconds,
            "gateway_cpu_ms_per_write": 1000 * gw_cpu / writes,
            "chroma_cpu_ms_per_write": 1000 * ch_cpu / writes,
            "write_p50_ms": 1000 * statistics.median(latencies),
            "write_p99_ms": 1000 * pct(latencies, 0.99),
            "lag_entries": len(lags),
            "lag_p50_s": pct(lags, 0.5) if lags else None,
            "lag_p99_s": pct(lags, 0.99) if lags else None,
            "lag_max_s": max(lags) if lags else None,
        }
    finally:
        if endpoint_ctx is not None:
            endpoint_ctx.__exit__(None, None, None)


class SegmentWatcher:
    """Lists the target's journal every 0.1 s and notes when each segment first shows up:
    when a restore could have used it."""

    def __init__(self, target: str, endpoint: str | None) -> None:
        options = {"endpoint_url": endpoint, "skip_instance_cache": True} if endpoint else None
        self.repo = Repository(target, options)
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        root = self.repo.path("journal")
        while not self._stop.is_set():
            try:
                found = (
                    self.repo.fs.find(root, refresh=True)
                    if not self.repo.is_local
                    else [str(p) for p in Path(root).rglob("*.zst")]
                )
            except (FileNotFoundError, OSError):
                found = []
            now = time.time()
            for path in found:
                if str(path).endswith(".zst"):
                    self.seen.setdefault(str(path).split("journal/", 1)[1], now)
            self._stop.wait(0.1)

    def lags(self) -> list[float]:
        """Per record entry: when its segment showed up minus when Chroma answered."""
        self._stop.set()
        self._thread.join(10)
        lags = []
        self.repo.fs.invalidate_cache()
        for name, seen in self.seen.items():
            path = self.repo.path("journal", name)
            _, entries = decode_segment(self.repo.fs.cat_file(path), path)
            lags += [seen - e.t for e in entries if e.kind == "records"]
        return lags


def replay_run(source: Path, work: Path, entries: int) -> dict[str, Any]:
    """Restore ``latest`` = a base of ``source`` + ``entries`` journaled adds of 10 records."""
    repo = Repository(str(work / "target"))
    result = create_snapshot(source, repo, NoHold(), chroma_version="1.5.9")
    assert result.cut_at is not None
    big = collection_ids(source)["big-0"]
    base_records = result.records
    cut = result.cut_at
    spool = Spool(work / "journal", "w0")
    rng = random.Random(entries)
    for n in range(entries):
        ids = [f"j{n}-{i}" for i in range(10)]
        body = json.dumps({"ids": ids, "embeddings": vectors(rng, 10)}).encode()
        spool.append(cut + 0.001 * (n + 1), "records", op="add", collection=big, body=body)
    last = cut + 0.001 * (entries + 1)
    shipper = Shipper(
        work / "journal",
        Timeline(repo),
        JournalMetrics(__import__("prometheus_client").CollectorRegistry(), 5.0),
        request_base=lambda: None,
        last_cut=lambda: cut,
        clock=lambda: last + 10,
    )
    shipper.head.started = cut - 1
    shipper.cycle()
    target = work / "restored"
    t = time.perf_counter()
    restored = restore(repo, target, to_time="latest" if entries else None)
    restore_s = time.perf_counter() - t
    t = time.perf_counter()
    with run_chroma(target) as chroma:
        count = httpx.get(f"{chroma.url}{DB}/collections/{big}/count", timeout=3600).json()
        first_answer_s = time.perf_counter() - t
    assert count == base_records + 10 * entries, (count, base_records, entries)
    return {
        "journal_entries": entries,
        "journal_records": 10 * entries,
        "replayed": restored.journal_entries,
        "restore_s": restore_s,
        "chroma_start_s": first_answer_s,
    }


def render(results: dict[str, Any]) -> str:
    out = [
        "# Continuous backup",
        "",
        f"Machine: {results['machine']}. Produced by `bench/backup/continuous.py`; the workloads are "
        "described in its docstring. CPU figures are ratios to the baseline in the same run.",
        "",
        "## Steady writer into the big collection",
        "",
        f"One client, {BATCH} records of 384 dims per add, paced at {results['rate']} adds/s for "
        f"{results['seconds']} s into the big collection (about {SIZE_MB} MB).",
        "",
        "| continuous backup | writes | gateway CPU ms/write | ratio to off | pod CPU ratio to off "
        "| write p50 ms | write p99 ms | lag p50 s | lag p99 s | lag max s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = {r["mode"]: r for r in results["steady"]}
    off = runs.get("off")
    for r in results["steady"]:
        ratio = r["gateway_cpu_ms_per_write"] / off["gateway_cpu_ms_per_write"] if off else float("nan")
        pod = r["gateway_cpu_ms_per_write"] + r["chroma_cpu_ms_per_write"]
        pod_off = off["gateway_cpu_ms_per_write"] + off["chroma_cpu_ms_per_write"] if off else float("nan")

        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        out.append(
            f"| {r['mode']} | {r['writes']} | {r['gateway_cpu_ms_per_write']:.2f} | {ratio:.2f} | "
            f"{pod / pod_off:.2f} | {r['write_p50_ms']:.1f} | {r['write_p99_ms']:.1f} | "
            f"{f(r['lag_p50_s'])} | {f(r['lag_p99_s'])} | {f(r['lag_max_s'])} |"
        )
    out += [
        "",
        "Lag: for each journal entry, when its segment showed up in a listing of the target (listed "
        "every 0.1 s) minus when Chroma answered the write. The recovery point goal is 5 s.",
        "",
        "## Restore to a point in time, by length of the journal replayed",
        "",
        "Base: a snapshot of the big collection; journal: N adds of 10 records into it.",
        "",
        "| journal entries | records replayed | restore s | ratio to base alone "
        "| Chroma's first start s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    base = results["replay"][0]
    for r in results["replay"]:
        out.append(
            f"| {r['journal_entries']} | {r['journal_records']} | {r['restore_s']:.2f} | "
            f"{r['restore_s'] / base['restore_s']:.2f} | {r['chroma_start_s']:.2f} | "
            f"{r['chroma_start_s'] / base['chroma_start_s']:.2f} |"
        )
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any]) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results["steady"]:
        if r["lag_p50_s"] is not None:
            left.bar(
                r["mode"], r["lag_max_s"], color="lightgrey", label="max" if r["mode"] == "local" else None
            )
            left.bar(
                r["mode"], r["lag_p99_s"], color="tab:blue", label="p99" if r["mode"] == "local" else None
            )
    left.axhline(5, color="grey", linestyle="--", label="goal: 5 s")
    left.set_ylabel("shipping lag (s)")
    left.set_title("steady writer")
    left.legend()
    xs = [r["journal_records"] for r in results["replay"]]
    right.plot(
        xs, [r["restore_s"] for r in results["replay"]], marker="o", label="restore (fetch, verify, replay)"
    )
    right.plot(xs, [r["chroma_start_s"] for r in results["replay"]], marker="o", label="Chroma's first start")
    right.set_xlabel("records replayed from the journal")
    right.set_ylabel("seconds")
    right.set_title("restore to a point in time")
    right.legend()
    fig.tight_layout()
    fig.savefig(HERE / "continuous.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=10, help="adds per second of the steady writer")
    parser.add_argument("--journal", default="0,500,2000,8000", help="journal entries to replay")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "chromactl-bench-hold"))
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    source = seed(cache, SIZE_MB, 1)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rate": args.rate,
        "seconds": args.seconds,
        "steady": [],
        "replay": [],
    }
    for mode in ("off", "local", "s3"):
        with tempfile.TemporaryDirectory(prefix="chromactl-bench-continuous-") as tmp:
            results["steady"].append(steady(source, Path(tmp), mode, args.seconds, args.rate))
        print(results["steady"][-1])
    for n in (int(x) for x in args.journal.split(",")):
        with tempfile.TemporaryDirectory(prefix="chromactl-bench-continuous-") as tmp:
            results["replay"].append(replay_run(source, Path(tmp), n))
        print(results["replay"][-1])
    (HERE / "continuous.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "continuous.md").write_text(render(results))
    print(render(results))
    plot(results)


if __name__ == "__main__":
    main()
