"""What the web console costs the API: gateway CPU per request with ``gateway.console`` on and
off, in the same run.

The console serves ``/console`` only; an API request pays for it at most the check of its
classified operation. Workloads, as in ``cpu.py``: ``query`` (n_results=10 over 10k x 384
vectors: the common read) and ``get`` of one record (the smallest request, where a per-request
cost shows most). The two gateways are visited in turn, ``--rounds`` times, so that other work
on the machine falls on both alike; the figure is the median over rounds. Results:
console.md and console.json beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import bench.gateway.run as base  # noqa: E402
from bench.gateway.cpu import measure_cpu  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=base.N)
    args = parser.parse_args()
    rng = random.Random(5)
    queries = [
        json.dumps({"query_embeddings": [base._vec(rng)], "n_results": 10, "include": ["distances"]}).encode()
        for _ in range(64)
    ]
    gets = [json.dumps({"ids": [f"v{rng.randrange(args.n)}"]}).encode() for _ in range(64)]
    load_before = os.getloadavg()[0]
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp, base.run_chroma(Path(tmp) / "chroma") as chroma:
        work = Path(tmp)
        col = base.load(chroma.url, "bench", args.n, rng)
        with contextlib.ExitStack() as stack:
            targets = {
                "console on": stack.enter_context(
                    base.gateway(work, chroma.url, tls=False, client="aiohttp")
                ),
                "console off": stack.enter_context(
                    base.gateway(work, chroma.url, tls=False, client="aiohttp", console=False)
                ),
            }
            for _ in range(args.rounds):
                for name, url in targets.items():
                    proxy = base.PIDS[url]
                    for case, bodies in (("query", queries), ("get", gets)):
                        path = f"{base.D}/collections/{col}/{case}"
                        result = measure_cpu(url, path, bodies, args.seconds, chroma.process.pid, proxy)
                        rounds.setdefault(name, {}).setdefault(case, []).append(result)
                        print(name, case, json.dumps(result))
    write(rounds, args, load_before)


def write(
    rounds: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace, load: float
) -> None:
    def median(name: str, case: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name][case])

    (HERE / "console.json").write_text(
        json.dumps({"args": vars(args), "load_before": load, "rounds": rounds}, indent=1)
    )
    lines = [
        "# The web console's cost to API requests",
        "",
        f"`console.py`: {args.n} x {base.DIM}-dim vectors, concurrency {base.CONCURRENCY}, "
        f"{args.rounds} rounds of {args.seconds:g} s per case visiting both gateways in turn, "
        f"{os.cpu_count()} CPUs, 1-minute load {load:.2f} before the run. Medians over the rounds.",
        "",
        "| case | gateway CPU ms per request, console on | console off | on / off "
        "| Chroma CPU ms (on) | req/s on | req/s off |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in ("query", "get"):
        on, off = median("console on", case, "proxy_cpu_ms"), median("console off", case, "proxy_cpu_ms")
        lines.append(
            f"| {case} | {on:.3f} | {off:.3f} | {on / off:.2f} "
            f"| {median('console on', case, 'chroma_cpu_ms'):.3f} | "
            f"{median('console on', case, 'rps'):.0f} | {median('console off', case, 'rps'):.0f} |"
        )
    spread = {
        case: [round(r["proxy_cpu_ms"], 3) for name in rounds for r in rounds[name][case]]
        for case in ("query", "get")
    }
    lines += ["", f"Per-round gateway CPU ms (on rounds, then off rounds): {json.dumps(spread)}", ""]
    (HERE / "console.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
