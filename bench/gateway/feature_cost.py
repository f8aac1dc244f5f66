"""What a gateway feature costs the API requests of a 1.x client: gateway CPU per request with
the feature on and off, in the same run.

    python bench/gateway/feature_cost.py --feature console          # console.md, console.json
    python bench/gateway/feature_cost.py --feature legacy_clients   # legacy_clients.md, .json

``console`` (``gateway.console``) serves ``/console`` only; ``legacy_clients``
(``gateway.legacy_clients``) translates old clients' requests, which a 1.x client's never are:
for both, an API request should pay at most a check of its classified operation and headers.
Workloads, as in ``cpu.py``: ``query`` (n_results=10 over 10k x 384 vectors: the common read)
and ``get`` of one record (the smallest request, where a per-request cost shows most), with a
``Content-Type`` as the 1.x client sends them. The two gateways are visited in turn,
``--rounds`` times, so that other work on the machine falls on both alike; the figure is the
median over rounds. Results beside this file, named after the feature.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import bench.gateway.run as base  # noqa: E402
from bench.gateway.cpu import measure_cpu  # noqa: E402

#: The features measured, by their gateway setting, and what the results call them.
TITLES = {"console": "The web console", "legacy_clients": "Legacy-client translation"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feature", choices=sorted(TITLES), default="console")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=base.N)
    args = parser.parse_args()
    rng = random.Random(5)
    queries = base.query_bodies(rng)
    gets = base.get_bodies(rng, args.n)
    load_before = os.getloadavg()[0]
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {}
    with base.loaded(args.n, rng) as (work, chroma, col), contextlib.ExitStack() as stack:
        off = {args.feature: False}
        targets = {
            "on": stack.enter_context(base.gateway(work, chroma.url, tls=False, client="aiohttp")),
            "off": stack.enter_context(base.gateway(work, chroma.url, tls=False, client="aiohttp", **off)),
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

    feature = args.feature
    (HERE / f"{feature}.json").write_text(
        json.dumps({"args": vars(args), "load_before": load, "rounds": rounds}, indent=1)
    )
    lines = [
        f"# {TITLES[feature]}'s cost to API requests",
        "",
        f"`feature_cost.py --feature {feature}`: {args.n} x {base.DIM}-dim vectors, "
        f"concurrency {base.CONCURRENCY}, "
        f"{args.rounds} rounds of {args.seconds:g} s per case visiting both gateways in turn, "
        f"{os.cpu_count()} CPUs, 1-minute load {load:.2f} before the run. Medians over the rounds.",
        "",
        f"| case | gateway CPU ms per request, {feature} on | {feature} off | on / off "
        "| Chroma CPU ms (on) | req/s on | req/s off |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in ("query", "get"):
        on, off = median("on", case, "proxy_cpu_ms"), median("off", case, "proxy_cpu_ms")
        lines.append(
            f"| {case} | {on:.3f} | {off:.3f} | {on / off:.2f} "
            f"| {median('on', case, 'chroma_cpu_ms'):.3f} | "
            f"{median('on', case, 'rps'):.0f} | {median('off', case, 'rps'):.0f} |"
        )
    spread = {
        case: [round(r["proxy_cpu_ms"], 3) for name in rounds for r in rounds[name][case]]
        for case in ("query", "get")
    }
    lines += ["", f"Per-round gateway CPU ms (on rounds, then off rounds): {json.dumps(spread)}", ""]
    (HERE / f"{feature}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
