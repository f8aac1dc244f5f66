"""Soak: long mixed load through the gateway, then Chroma killed (twice) under load.

  baseline   the same load against Chroma directly (latency ratios are against it)
  soak       ``--duration`` seconds (default 300) at concurrency 64, 30% ``add``, 70%
             ``query``/``get`` through the gateway process; RSS sampled every 2 s
  faults     ``--fault-duration`` (60) s of the same load; Chroma SIGKILLed at 15 s and
             40 s, started again (same port and data) 5 s later each time; the load goes on
             at least 10 s after Chroma is back the second time

Writes results.json, results.md and results.png (RSS and latency over time) here.
Run with ``make soak`` or ``.venv/bin/python bench/soak/run.py [--duration 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.plot import pyplot  # noqa: E402
from tests.security.loadgen import (  # noqa: E402
    ChromaProcess,
    GatewayProcess,
    LoadResult,
    OutageJudge,
    Sample,
    make_collection,
    missing_acked,
    run_load,
)

CONCURRENCY = 64
WARMUP_S = 20


def _summary(result: LoadResult, problems: list[str]) -> dict[str, Any]:
    statuses = result.statuses()
    return {
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "problems": len(problems),
        "problem_examples": problems[:10],
        "latency": {op: result.percentiles(op) for op in ("query", "get", "add")},
        "throughput_rps": round(sum(statuses.values()) / max(s.at for s in result.samples), 1),
    }


def _rss_growth(result: LoadResult) -> dict[str, Any]:
    after_warmup = [kib for t, kib in result.rss if t >= WARMUP_S]
    base, last = after_warmup[0], after_warmup[-1]
    return {
        "rss_start_kib": result.rss[0][1],
        "rss_after_warmup_kib": base,
        "rss_end_kib": last,
        "rss_max_kib": max(after_warmup),
        "growth_after_warmup": round(last / base - 1, 4),
    }


def run(duration_s: float, fault_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "duration_s": duration_s,
        "fault_duration_s": fault_s,
        "concurrency": CONCURRENCY,
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        chroma = ChromaProcess(work / "chroma")
        gw = GatewayProcess(work, chroma.url)
        chroma.start()
        gw.start()
        try:
            cid = make_collection(gw.url, "soak")
            print("baseline (Chroma directly) ...", flush=True)
            base, problems = asyncio.run(run_load(chroma.url, cid, duration_s=30, seed=10))
            out["baseline"] = _summary(base, problems)
            print(f"soak {duration_s:.0f}s through the gateway ...", flush=True)
            soak, problems = asyncio.run(
                run_load(gw.url, cid, duration_s=duration_s, rss_of=gw.rss_kib, rss_every_s=2.0, seed=11)
            )
            out["soak"] = _summary(soak, problems) | _rss_growth(soak)
            out["soak"]["lost_acked_writes"] = len(missing_acked(chroma.url, cid, soak.acked))
            out["soak_series"] = {
                "rss": soak.rss,
                "latency": _latency_series(soak.samples),
            }
            out["ratios_vs_direct"] = {
                op: {
                    k: round(out["soak"]["latency"][op][k] / out["baseline"]["latency"][op][k], 2)
                    for k in ("p50_ms", "p90_ms", "p99_ms")
                }
                for op in ("query", "get", "add")
            }
            print(f"faults {fault_s:.0f}s: Chroma killed twice ...", flush=True)
            out["faults"] = _faults(chroma, gw, cid, fault_s)
        finally:
            gw.stop()
            chroma.stop()
    out["load_after"] = os.getloadavg()
    return out


def _latency_series(samples: list[Sample], bucket_s: float = 5.0) -> list[tuple[float, float]]:
    buckets: dict[int, list[float]] = {}
    for s in samples:
        if s.status // 100 == 2:
            buckets.setdefault(int(s.at // bucket_s), []).append(s.latency_s)
    series = []
    for b, lat in sorted(buckets.items()):
        lat.sort()
        series.append((b * bucket_s, round(lat[int(0.99 * (len(lat) - 1))] * 1000, 2)))
    return series


def _faults(chroma: ChromaProcess, gw: GatewayProcess, cid: str, fault_s: float) -> dict[str, Any]:
    pid = gw.proc.pid if gw.proc else 0
    events: list[tuple[str, float]] = []
    judge = OutageJudge()
    t0 = time.monotonic()

    stop = threading.Event()

    def fault() -> None:
        try:
            for at in (15.0, 40.0):
                time.sleep(max(0.0, at - (time.monotonic() - t0)))
                events.append(("killed", round(time.monotonic() - t0, 2)))
                judge.killed.set()
                chroma.kill()
                time.sleep(5)
                chroma.start()
                events.append(("back", round(time.monotonic() - t0, 2)))
            time.sleep(max(10.0, fault_s - (time.monotonic() - t0)))
        finally:
            stop.set()

    thread = threading.Thread(target=fault)
    thread.start()
    result, problems = asyncio.run(
        run_load(
            gw.url,
            cid,
            duration_s=fault_s + 180,
            request_timeout_s=10,
            judge=judge,
            seed=12,
            stop=stop,
        )
    )
    thread.join()
    recoveries = []
    for name, at in events:
        if name == "back":
            ok = [s.at for s in result.samples if s.at >= at and s.status // 100 == 2]
            recoveries.append(round(ok[0] - at, 2) if ok else None)
    summary = _summary(result, problems)
    summary.update(
        {
            "events": events,
            "recovery_s_after_chroma_back": recoveries,
            "gateway_restarted": not (gw.proc is not None and gw.proc.pid == pid and gw.proc.poll() is None),
            "chroma_errors": len(judge.chroma_errors),
            "chroma_error_examples": judge.chroma_errors[:5],
            "acked_writes": len(result.acked),
            "lost_acked_writes": len(missing_acked(chroma.url, cid, result.acked)),
            "slowest_answer_s": round(max(s.latency_s for s in result.samples), 2),
            "elapsed_s": round(max(s.at + s.latency_s for s in result.samples), 1),
        }
    )
    return summary


def write(results: dict[str, Any]) -> None:
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    s, b, f = results["soak"], results["baseline"], results["faults"]
    lines = [
        "# Soak: the gateway under long load and Chroma faults",
        "",
        "Written by `make soak` (`bench/soak/run.py`); raw numbers in results.json, plot in results.png.",
        f"Machine: {results['machine']}. Load average before: "
        f"{', '.join(f'{x:.2f}' for x in results['load_before'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in results['load_after'])} (the machine is shared: absolute "
        "latencies vary with it, the ratios against the direct baseline of the same run less so).",
        "",
        f"## Soak: {results['duration_s']:.0f} s, concurrency {results['concurrency']}, "
        "30% add / 70% query+get",
        "",
        f"- requests: {s['requests']} ({s['throughput_rps']} /s); statuses: {s['statuses']}; "
        f"unexpected answers: {s['problems']}",
        f"- gateway RSS: {s['rss_start_kib']} KiB at start, {s['rss_after_warmup_kib']} KiB after "
        f"{WARMUP_S} s warm-up, {s['rss_end_kib']} KiB at the end (max {s['rss_max_kib']}): growth "
        f"after warm-up {s['growth_after_warmup'] * 100:.1f}% (goal: under 10%)",
        f"- acknowledged writes lost: {s['lost_acked_writes']}",
        "",
        "| op | requests | p50 ms | p90 ms | p99 ms | max ms | p50 / direct | p99 / direct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in ("query", "get", "add"):
        lat, r = s["latency"][op], results["ratios_vs_direct"][op]
        lines.append(
            f"| {op} | {lat['count']} | {lat['p50_ms']} | {lat['p90_ms']} | {lat['p99_ms']} "
            f"| {lat['max_ms']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    lines += [
        "",
        f"Baseline, Chroma directly for 30 s: {b['requests']} requests ({b['throughput_rps']} /s), "
        + ", ".join(f"{op} p50 {b['latency'][op]['p50_ms']} ms" for op in ("query", "get", "add")),
        "",
        f"## Faults: {f['requests']} requests in {f['elapsed_s']:.0f} s, Chroma SIGKILLed twice",
        "",
        f"- events (s): {f['events']}",
        f"- statuses: {f['statuses']}; answers that were neither 2xx nor the gateway's Chroma-shaped "
        f"503 with Retry-After, or no answer in 10 s: {f['problems']}",
        f"- Chroma's own 5xx answers after its restart, passed on untouched (chroma-core/chroma#7678): "
        f"{f.get('chroma_errors', 0)}",
        f"- first 2xx after Chroma was back (s): {f['recovery_s_after_chroma_back']}; "
        f"gateway restarted: {f['gateway_restarted']}; slowest answer: {f['slowest_answer_s']} s",
        f"- acknowledged writes: {f['acked_writes']}, lost: {f['lost_acked_writes']}",
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines))
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    rss = results["soak_series"]["rss"]
    ax1.plot([t for t, _ in rss], [k / 1024 for _, k in rss])
    ax1.set_ylabel("gateway RSS (MiB)")
    ax1.set_ylim(0, max(k for _, k in rss) / 1024 * 1.3)
    lat = results["soak_series"]["latency"]
    ax2.plot([t for t, _ in lat], [v for _, v in lat])
    ax2.set_ylabel("p99 latency per 5 s (ms)")
    ax2.set_xlabel("seconds")
    fig.suptitle(f"Soak: concurrency {results['concurrency']}, mixed reads and writes")
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--fault-duration", type=float, default=60.0)
    parser.add_argument(
        "--rewrite", action="store_true", help="only rewrite results.md/png from results.json"
    )
    args = parser.parse_args()
    if args.rewrite:
        write(json.loads((HERE / "results.json").read_text()))
        return
    results = run(args.duration, args.fault_duration)
    write(results)
    print((HERE / "results.md").read_text())


if __name__ == "__main__":
    main()
