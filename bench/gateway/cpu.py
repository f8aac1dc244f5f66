"""CPU per request: Chroma, the gateway (1, 2, ... workers) and nginx, measured in one run.

The figure that does not depend on how many cores the machine has is CPU time per request:
how much CPU a proxy spends to pass one request on, against what Chroma spends to answer it.
From it follows how many of Chroma's cores one gateway worker keeps busy
(``chroma ms / gateway ms``). Each case drives one target at concurrency 16 for
``--seconds`` and reads, from ``/proc``, the CPU time (user + system) of Chroma and of the
proxy's whole process tree (a supervisor and its workers, nginx's master and worker) over
exactly that interval.

Workloads (one collection of 10k x 384-dim vectors, as in ``run.py``):

  query   n_results=10, one query vector: the most common read
  get     one record by id: the smallest request, where per-request overhead shows most
  add     batches of 100 new 384-dim records: the write path
  upsert_4mb  500 records (a 4 MB body) rewritten in place: a body the gateway streams

Targets: ``direct`` (Chroma, the baseline), ``gateway-wN`` for each ``--workers`` count (the
fast path, the default), ``gateway-w1-asgi`` (one worker, ``fast_path: false``: every request
through the ASGI app, the path before it), ``gateway-w1-tls`` (the fast path behind TLS), and
``nginx`` (one worker, keep-alive upstream) as a plain C proxy. Throughput per target is
written too. ``--cores`` pins Chroma's threads to its first N CPUs, one matrix row per
count: with ``--workers 1,2,4,8 --cores 4,8,16`` on a bigger machine the same script shows
where the gateway, not Chroma, sets the throughput. Writes cpu.json, cpu.md and cpu.png
(with matplotlib) here.

    .venv/bin/python bench/gateway/cpu.py [--workers 1,2] [--cores 2] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import bench.gateway.run as base  # noqa: E402  (targets, load generator)
from bench.plot import pyplot  # noqa: E402

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += tree(int(child))
    return out


def user_sys_s(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` so far."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) * TICK_S
            system += int(fields[12]) * TICK_S
    return user, system


def pin(pid: int, cores: int) -> None:
    """Every thread of ``pid`` (and the threads it starts later) on CPUs 0..cores-1."""
    cpus = set(range(cores))
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def measure_cpu(
    url: str,
    path: str,
    bodies: list[bytes] | Callable[[], bytes],
    seconds: float,
    chroma: int,
    proxy: int | None,
) -> dict[str, float]:
    chroma_pids = tree(chroma)
    proxy_pids = tree(proxy) if proxy is not None else []
    c0, (u0, s0) = sum(user_sys_s(chroma_pids)), user_sys_s(proxy_pids)
    latencies, errors, elapsed = asyncio.run(base.measure(url, path, bodies, seconds))
    c1, (u1, s1) = sum(user_sys_s(chroma_pids)), user_sys_s(proxy_pids)
    # The warm-up second of measure() is inside the CPU interval: count its requests too.
    n = len(latencies)
    warm = n / elapsed  # about one more second of requests at the same rate
    requests = n + warm
    return {
        "requests": n,
        "errors": errors,
        "rps": n / elapsed,
        "chroma_cpu_ms": (c1 - c0) * 1000 / requests,
        "proxy_cpu_ms": (u1 + s1 - u0 - s0) * 1000 / requests,
        # the proxy's own work, and its system calls (the sockets)
        "proxy_user_ms": (u1 - u0) * 1000 / requests,
        "proxy_sys_ms": (s1 - s0) * 1000 / requests,
    }


#: Measurements by target, then case: one per round.
Rounds = dict[str, dict[str, list[dict[str, float]]]]


def measure_rounds(
    targets: dict[str, str | None],
    cases: dict[str, tuple[str, list[bytes] | Callable[[], bytes]]],
    rounds: int,
    seconds: float,
    chroma: int,
    *,
    alternate: bool = False,
) -> Rounds:
    """Every case (its path and bodies) on every target, ``rounds`` times, targets in turn
    (in reverse order every other round with ``alternate``)."""
    results: Rounds = {}
    order = list(targets.items())
    for _ in range(rounds):
        if alternate:
            order.reverse()
        for name, url in order:
            if url is None:
                continue  # a target this machine does not have (nginx)
            for case, (path, bodies) in cases.items():
                result = measure_cpu(url, path, bodies, seconds, chroma, base.PIDS.get(url))
                results.setdefault(name, {}).setdefault(case, []).append(result)
                print(name, case, json.dumps(result), flush=True)
    return results


def save_rounds(stem: str, results: Rounds, args: argparse.Namespace, load: float) -> None:
    """``<stem>.json`` next to this file: the arguments, the load before the run, every round."""
    (Path(__file__).resolve().parent / f"{stem}.json").write_text(
        json.dumps({"args": vars(args), "load_before": load, "rounds": results}, indent=1)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per case")
    parser.add_argument("--workers", default="1,2", help="gateway worker counts, comma-separated")
    parser.add_argument(
        "--cores", default=str(os.cpu_count()), help="CPUs given to Chroma, comma-separated (one row each)"
    )
    parser.add_argument("--n", type=int, default=base.N)
    args = parser.parse_args()
    core_counts = [int(x) for x in args.cores.split(",")]
    if max(core_counts) > (os.cpu_count() or 1):
        parser.error(f"--cores {args.cores}: this machine has {os.cpu_count()} CPUs")
    rng = random.Random(11)
    queries = base.query_bodies(rng)
    gets = base.get_bodies(rng, args.n)
    add_body = base.add_bodies(rng)
    big = base.upsert_4mb_body(rng)

    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, base.run_chroma(Path(tmp) / "chroma") as chroma:
        work = Path(tmp)
        col = base.load(chroma.url, "bench", args.n, rng)
        adds = base.load(chroma.url, "bench-add", 0, rng)
        with contextlib.ExitStack() as stack:
            targets: dict[str, str | None] = {"direct": chroma.url}
            for w in (int(x) for x in args.workers.split(",")):
                targets[f"gateway-w{w}"] = stack.enter_context(
                    base.gateway(work, chroma.url, tls=False, client="aiohttp", workers=w)
                )
            # The same gateway with every request through the ASGI app (the path before the
            # fast path), and the fast path behind TLS.
            targets["gateway-w1-asgi"] = stack.enter_context(
                base.gateway(work, chroma.url, tls=False, client="aiohttp", fast_path=False)
            )
            targets["gateway-w1-tls"] = stack.enter_context(
                base.gateway(work, chroma.url, tls=True, client="aiohttp")
            )
            targets["nginx"] = stack.enter_context(base.nginx(work, chroma.url))
            for cores, (target, url) in itertools.product(core_counts, targets.items()):
                if url is None:
                    continue
                pin(chroma.process.pid, cores)
                name = f"{target} ({cores} cores)"
                proxy = base.PIDS.get(url)
                results[name] = {
                    "query": measure_cpu(
                        url,
                        f"{base.D}/collections/{col}/query",
                        queries,
                        args.seconds,
                        chroma.process.pid,
                        proxy,
                    ),
                    "get": measure_cpu(
                        url, f"{base.D}/collections/{col}/get", gets, args.seconds, chroma.process.pid, proxy
                    ),
                    "add": measure_cpu(
                        url,
                        f"{base.D}/collections/{adds}/add",
                        add_body,
                        args.seconds / 2,
                        chroma.process.pid,
                        proxy,
                    ),
                    "upsert_4mb": measure_cpu(
                        url,
                        f"{base.D}/collections/{adds}/upsert",
                        [big],
                        args.seconds / 2,
                        chroma.process.pid,
                        proxy,
                    ),
                }
                print(name, json.dumps(results[name]))
    write(results, args, load_before)


def write(
    results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace, load_before: float
) -> None:
    meta = {
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "vectors": args.n,
        "concurrency": base.CONCURRENCY,
        "seconds_per_case": args.seconds,
        "load_average_1m_before": round(load_before, 2),
    }
    (HERE / "cpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        "# CPU per request",
        "",
        f"{args.n} x 384-dim vectors, concurrency {base.CONCURRENCY}, {args.seconds:g} s per case "
        f"({args.seconds / 2:g} s for add), {meta['cpus']} CPUs, load generator on the same machine. CPU is "
        "user + system time from /proc over the measured interval, divided by the requests answered; "
        "`ratio` is the proxy's CPU per request over Chroma's (what the proxy costs for each unit of "
        "Chroma's work), `feeds` is how many of Chroma's cores one core of the proxy keeps busy.",
        "",
        "| target | case | req/s | Chroma CPU ms/req | proxy CPU ms/req | ratio | feeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cases in results.items():
        for case, r in cases.items():
            ratio = r["proxy_cpu_ms"] / r["chroma_cpu_ms"] if r["chroma_cpu_ms"] else 0.0
            feeds = f"{1 / ratio:.1f}" if ratio else "-"
            direct = name.startswith("direct")
            proxy = f"{r['proxy_cpu_ms']:.3f}" if not direct else "-"
            shown = f"{ratio:.2f}" if not direct else "-"
            lines.append(
                f"| {name} | {case} | {r['rps']:.0f} | {r['chroma_cpu_ms']:.3f} | {proxy} | {shown} | "
                f"{feeds if not direct else '-'} |"
            )
    (HERE / "cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plt = pyplot()
    if plt is None:
        return
    proxies = [n for n in results if not n.startswith("direct")]
    cases = ["query", "get", "add", "upsert_4mb"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(proxies)
    for i, name in enumerate(proxies):
        ratios = [results[name][c]["proxy_cpu_ms"] / results[name][c]["chroma_cpu_ms"] for c in cases]
        ax.bar([x + i * width for x in range(len(cases))], ratios, width, label=name)
    ax.axhline(0.15, color="grey", linestyle="--", label="goal 0.15")
    ax.set_xticks([x + width * (len(proxies) - 1) / 2 for x in range(len(cases))], cases)
    ax.set_ylabel("proxy CPU / Chroma CPU per request (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "cpu.png", dpi=100)


if __name__ == "__main__":
    main()
