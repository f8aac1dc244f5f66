"""The write path: what the gateway spends per write on the fast path and on the ASGI path.

    python bench/gateway/writes.py [--rounds 4] [--seconds 10]     # writes.md, writes.json

Targets, each in front of the same Chroma, visited in turn ``--rounds`` times (in reverse
order every other round):

  gateway        the fast path as shipped (token authentication, RBAC, metrics, audit hooks)
  gateway-asgi   the same gateway with ``fast_path: false``: every request through the ASGI app

Workloads, at concurrency 16: ``add`` of 100 new records (the common write, read whole before
it is forwarded) and ``upsert_4mb``, one 500-record upsert of about 4 MB rewritten in place (a
body the gateway streams to Chroma as it arrives). Chroma takes a few of these a second, so
``cpu.py``'s short cases see a handful of upserts each; the rounds here see about a hundred.
The CPU of each gateway's process tree is read from ``/proc`` (user and system time apart);
the figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import bench.gateway.run as base  # noqa: E402
from bench.gateway.cpu import Rounds, measure_rounds, save_rounds  # noqa: E402

CASES = ("add", "upsert_4mb")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(5)
    bodies = {"add": base.add_bodies(rng), "upsert_4mb": [base.upsert_4mb_body(rng)]}
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        base.run_chroma(Path(tmp) / "chroma") as chroma,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        col = base.load(chroma.url, "bench-writes", 0, rng)
        targets = {
            "gateway": stack.enter_context(base.gateway(work, chroma.url, tls=False, client="aiohttp")),
            "gateway-asgi": stack.enter_context(
                base.gateway(work, chroma.url, tls=False, client="aiohttp", fast_path=False)
            ),
        }
        paths = {"add": f"{base.D}/collections/{col}/add", "upsert_4mb": f"{base.D}/collections/{col}/upsert"}
        cases = {case: (paths[case], bodies[case]) for case in CASES}
        # Chroma's cost per write drifts as its collection grows: the order of the gateways
        # is reversed every other round, so that neither is always measured on its later side.
        rounds = measure_rounds(targets, cases, args.rounds, args.seconds, chroma.process.pid, alternate=True)
    write(rounds, args, load_before)


def write(rounds: Rounds, args: argparse.Namespace, load: float) -> None:
    save_rounds("writes", rounds, args, load)
    lines = [
        "# The write path: the fast path against the ASGI path",
        "",
        f"`writes.py`: concurrency {base.CONCURRENCY}, {args.rounds} rounds of {args.seconds:g} s per "
        f"case visiting both gateways in turn, {os.cpu_count()} CPUs, 1-minute load {load:.2f} before "
        "the run. Medians over the rounds; requests: all rounds together.",
        "",
        "| case | target | requests | user ms | system ms | gateway CPU ms | x ASGI path |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        asgi = statistics.median(r["proxy_cpu_ms"] for r in rounds["gateway-asgi"][case])
        for name in sorted(rounds):
            runs = rounds[name][case]
            user = statistics.median(r["proxy_user_ms"] for r in runs)
            system = statistics.median(r["proxy_sys_ms"] for r in runs)
            cpu = statistics.median(r["proxy_cpu_ms"] for r in runs)
            count = sum(int(r["requests"]) for r in runs)
            lines.append(
                f"| {case} | {name} | {count} | {user:.2f} | {system:.2f} | {cpu:.2f} | {cpu / asgi:.2f} |"
            )
    lines.append("")
    (HERE / "writes.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
