"""Where the gateway's CPU per request goes: its decisions, its plumbing, and the floor under both.

    python bench/gateway/floor.py [--rounds 4] [--seconds 5]     # floor.md, floor.json

Targets, each in front of the same Chroma, visited in turn ``--rounds`` times:

  gateway           the fast path as shipped (token authentication, RBAC, metrics, audit hooks)
  gateway-auth-off  the same with ``gateway.auth.enabled: false``: what authentication and
                    authorization cost
  python-floor      ``floor_proxy.py``: uvloop and httptools with one callback per read and no
                    decision at all, the least any proxy on this event loop and parser spends
  nginx             a C proxy (one worker, keep-alive upstream)

Workloads, as in ``cpu.py``: ``query`` (n_results=10 over 10k x 384 vectors: the common read)
and ``get`` of one record (the smallest request, where per-request cost shows most). The CPU of
each proxy's process tree is read from ``/proc`` as user and system time apart: system time is
the sockets' (the same two reads and two writes for every proxy), user time is the proxy's own
work. The figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import bench.gateway.run as base  # noqa: E402
from bench.gateway.cpu import Rounds, measure_rounds, save_rounds  # noqa: E402

CASES = ("query", "get")


@contextlib.contextmanager
def floor_proxy(chroma_url: str) -> Iterator[str]:
    upstream = urlsplit(chroma_url)
    port = base.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "floor_proxy.py"), upstream.hostname or "", str(upstream.port), str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    base.PIDS[url] = proc.pid
    try:
        base.wait_until(lambda: base._answers(url), 15, "the floor proxy")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=base.N)
    args = parser.parse_args()
    rng = random.Random(7)
    bodies = {"query": base.query_bodies(rng), "get": base.get_bodies(rng, args.n)}
    load_before = os.getloadavg()[0]
    with base.loaded(args.n, rng) as (work, chroma, col), contextlib.ExitStack() as stack:
        targets = {
            "gateway": stack.enter_context(base.gateway(work, chroma.url, tls=False, client="aiohttp")),
            "gateway-auth-off": stack.enter_context(
                base.gateway(work, chroma.url, tls=False, client="aiohttp", auth=False)
            ),
            "python-floor": stack.enter_context(floor_proxy(chroma.url)),
            "nginx": stack.enter_context(base.nginx(work, chroma.url)),
        }
        cases = {case: (f"{base.D}/collections/{col}/{case}", bodies[case]) for case in CASES}
        rounds = measure_rounds(targets, cases, args.rounds, args.seconds, chroma.process.pid)
    write(rounds, args, load_before)


def write(rounds: Rounds, args: argparse.Namespace, load: float) -> None:
    save_rounds("floor", rounds, args, load)
    lines = [
        "# Where the gateway's CPU per request goes",
        "",
        f"`floor.py`: {args.n} x {base.DIM}-dim vectors, concurrency {base.CONCURRENCY}, "
        f"{args.rounds} rounds of {args.seconds:g} s per case visiting every target in turn, "
        f"{os.cpu_count()} CPUs, 1-minute load {load:.2f} before the run. Medians over the rounds; "
        "the ratio is the proxy's CPU (user + system) over Chroma's in the same interval.",
        "",
        "| case | target | user ms | system ms | CPU ms | / Chroma's | req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        for name, by_case in rounds.items():
            runs = by_case[case]

            def median(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            ratio = statistics.median(r["proxy_cpu_ms"] / r["chroma_cpu_ms"] for r in runs)
            user, system = median("proxy_user_ms"), median("proxy_sys_ms")
            lines.append(
                f"| {case} | {name} | {user:.3f} | {system:.3f} | {user + system:.3f} "
                f"| {ratio:.3f} | {median('rps'):.0f} |"
            )
    lines.append("")
    (HERE / "floor.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
