"""What a second credential sees while a noisy one is over its rate limit (docs/limits.md).

One gateway process in front of Chroma, two credentials of the same role:

  steady   a service's client: 20 queries a second, paced, 4 at once at most
  other    another client sending exactly its limit, 20 requests a second (a third of them
           adds of 5 records): the load the limit lets through
  noisy    the same client sending as fast as 16 connections allow (adds and queries), far
           over its limit of 20 requests a second: either waiting as each 429's Retry-After
           says (a client with a retry policy), or ignoring it and sending again at once
           (the worst case: the gateway spends its time refusing); with that rate alone, and
           with the rate and ``concurrent_requests: 2`` (its 16 connections coming back
           together after a Retry-After cannot all reach Chroma at once)

Phases, ``--seconds`` each: the steady client alone, beside the other client at its limit
(the baseline of the ratios: the load the limit allows), beside the noisy client with
``gateway.limits`` on (honouring Retry-After, then ignoring it), and beside the noisy client
with no limits. Reported: the steady client's latency (p50, p90, p99), its ratio to the
baseline, and what the other client got. Writes limits.json and limits.md here.

    .venv/bin/python bench/soak/limits.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.gateway.helpers import write_secret  # noqa: E402
from tests.security.loadgen import DIM, ChromaProcess, D, GatewayProcess, make_collection  # noqa: E402

STEADY_TOKEN = "ck_soak-steady-token"
NOISY_TOKEN = "ck_soak-noisy-token"
STEADY_RATE = 20.0
NOISY_LIMIT: dict[str, float] = {"requests_per_second": 20, "burst": 20}
#: The same rate, and at most 2 of its requests in flight: a burst cannot crowd Chroma.
NOISY_CAPPED = {**NOISY_LIMIT, "concurrent_requests": 2}
#: name, the noisy credential's limits (None: no limits at all), the noisy client (None: none;
#: paced at its limit, honours or ignores Retry-After).
PHASES: list[tuple[str, dict[str, float] | None, str | None]] = [
    ("alone", NOISY_LIMIT, None),
    ("other_at_its_limit", NOISY_LIMIT, "paced"),
    ("noisy_limited", NOISY_LIMIT, "honours"),
    ("noisy_limited_ignoring_retry_after", NOISY_LIMIT, "ignores"),
    ("noisy_limited_and_capped", NOISY_CAPPED, "honours"),
    ("noisy_limited_and_capped_ignoring_retry_after", NOISY_CAPPED, "ignores"),
    ("noisy_unlimited", None, "ignores"),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def steady(base: str, seconds: float) -> list[float]:
    """Paced queries; each one's latency (s)."""
    latencies: list[float] = []
    rng = random.Random(1)
    sem = asyncio.Semaphore(4)
    start = time.monotonic()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {STEADY_TOKEN}"}) as session:

        async def one() -> None:
            async with sem:
                body = {"query_embeddings": [[rng.random() for _ in range(DIM)]], "n_results": 5}
                t0 = time.monotonic()
                async with session.post(f"{base}/query", json=body) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                latencies.append(time.monotonic() - t0)

        tasks = []
        n = 0
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(one()))
            n += 1
            await asyncio.sleep(max(0.0, start + n / STEADY_RATE - time.monotonic()))
        await asyncio.gather(*tasks)
    return latencies


async def noisy(base: str, seconds: float, statuses: Counter[int], mode: str) -> None:
    """``mode``: ``paced`` (exactly its limit), ``honours`` or ``ignores`` Retry-After."""
    rng = random.Random(2)
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {NOISY_TOKEN}"}) as session:

        async def worker(w: int) -> None:
            i = 0
            while time.monotonic() < end:
                i += 1
                if i % 3 == 0:
                    ids = [f"noisy-{w}-{i}-{k}" for k in range(5)]
                    op, body = (
                        "add",
                        {"ids": ids, "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids]},
                    )
                else:
                    op, body = (
                        "query",
                        {"query_embeddings": [[rng.random() for _ in range(DIM)]], "n_results": 5},
                    )
                async with session.post(f"{base}/{op}", json=body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                    wait = float(resp.headers.get("Retry-After", "0")) if resp.status == 429 else 0.0
                if mode == "honours" and wait:
                    await asyncio.sleep(wait)
                elif mode == "paced":
                    await asyncio.sleep(16 / NOISY_LIMIT["requests_per_second"])

        await asyncio.gather(*(worker(w) for w in range(16)))


def phase(base: str, seconds: float, noisy_client: str | None) -> dict[str, Any]:
    statuses: Counter[int] = Counter()

    async def both() -> list[float]:
        jobs = [steady(base, seconds)]
        if noisy_client is not None:
            jobs.append(noisy(base, seconds, statuses, noisy_client))  # type: ignore[arg-type]
        return (await asyncio.gather(*jobs))[0]  # type: ignore[no-any-return]

    latencies = asyncio.run(both())
    return {
        "requests": len(latencies),
        "p50_ms": 1000 * pct(latencies, 0.5),
        "p90_ms": 1000 * pct(latencies, 0.9),
        "p99_ms": 1000 * pct(latencies, 0.99),
        "noisy_statuses": dict(statuses),
    }


def gateway(work: Path, chroma_url: str, limits: dict[str, float] | None) -> GatewayProcess:
    creds = [
        {
            "name": "load",
            "token_file": str(write_secret(work, "load.token", "ck_soak-load")),
            "role": "writer",
        },
        {
            "name": "steady",
            "token_file": str(write_secret(work, "steady.token", STEADY_TOKEN)),
            "role": "writer",
        },
        {
            "name": "noisy",
            "token_file": str(write_secret(work, "noisy.token", NOISY_TOKEN)),
            "role": "writer",
        },
    ]
    extra: dict[str, Any] = {"auth": {"token": {"credentials": creds}}, "workers": 1}
    if limits is not None:
        extra["limits"] = {"enabled": True, "credentials": {"noisy": limits}}
    return GatewayProcess(work, chroma_url, **extra)


def run(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seconds": seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "noisy_limit": NOISY_LIMIT,
        "steady_rate": STEADY_RATE,
    }
    with tempfile.TemporaryDirectory(prefix="soak-limits-") as tmp:
        work = Path(tmp)
        chroma = ChromaProcess(work / "chroma")
        chroma.start()
        try:
            for name, limits, noisy_client in PHASES:
                gw = gateway(work, chroma.url, limits)
                gw.start()
                try:
                    cid = make_collection(gw.url, f"limits-{name.replace('_', '-')}", seed_records=2000)
                    base = f"{gw.url}{D}/collections/{cid}"
                    print(f"{name} ...", flush=True)
                    out[name] = phase(base, seconds, noisy_client)
                finally:
                    gw.stop()
        finally:
            chroma.stop()
    for name, _, _ in PHASES:
        base = out["other_at_its_limit"]
        out[name]["ratio"] = {k: out[name][k] / base[k] for k in ("p50_ms", "p90_ms", "p99_ms")}
    return out


def render(r: dict[str, Any]) -> str:
    lines = [
        "# A second credential beside a noisy one",
        "",
        f"Machine: {r['machine']}. Produced by `bench/soak/limits.py` (`make soak`); the workload is in "
        f"its docstring: a steady client at {r['steady_rate']:g} queries a second, a noisy one as fast as "
        f"16 connections go, limited to {r['noisy_limit']['requests_per_second']} requests a second; "
        f"{r['seconds']:g} s per phase, one gateway process. Ratios: to the phase with the other "
        "client at its limit (the load the limit lets through).",
        "",
        "| phase | steady requests | p50 ms | p90 ms | p99 ms | p50 ratio | p99 ratio | other client got |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, _, _ in PHASES:
        p = r[name]
        ratio = p["ratio"]
        got = ", ".join(f"{n} x {s}" for s, n in sorted(p["noisy_statuses"].items())) or "n/a"
        lines.append(
            f"| {name.replace('_', ' ')} | {p['requests']} | {p['p50_ms']:.1f} | {p['p90_ms']:.1f} | "
            f"{p['p99_ms']:.1f} | {ratio['p50_ms']:.2f} | {ratio['p99_ms']:.2f} | {got} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    results = run(args.seconds)
    (HERE / "limits.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "limits.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
