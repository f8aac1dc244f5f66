"""Gateway overhead benchmark: Chroma direct vs the chromactl gateway vs nginx, in one run.

One collection of 10k x 384-dim vectors; ``query`` (n_results=10) and ``add`` (batches of
100) at concurrency 16 against each target. The query cases run in rounds (``--rounds``,
default 4) that visit every target in turn, so that other work on the machine falls on
all targets alike instead of on whichever ran when it started:

  direct            Chroma itself
  gateway           chromactl gateway, token auth, aiohttp upstream client (the default)
  gateway-httpx     the same with the httpx upstream client (for the choice of client)
  gateway-tls       chromactl gateway, token auth, TLS
  nginx             nginx (Debian package) as a plain keep-alive reverse proxy

Writes results.json, results.md and (if matplotlib is installed) results.png here.
Run with ``make bench`` or ``.venv/bin/python bench/gateway/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.plot import pyplot  # noqa: E402
from tests.gateway.helpers import Chroma, free_port, make_cert, run_chroma, wait_until  # noqa: E402

DIM = 384
N = 10_000
CONCURRENCY = 16
TOKEN = "ck_bench-token"
D = "/api/v2/tenants/default_tenant/databases/default_database"


def _vec(rng: random.Random) -> list[float]:
    return [rng.random() for _ in range(DIM)]


def query_bodies(rng: random.Random, count: int = 64) -> list[bytes]:
    """``count`` query bodies, one vector each, n_results=10: the common read."""
    return [
        json.dumps({"query_embeddings": [_vec(rng)], "n_results": 10, "include": ["distances"]}).encode()
        for _ in range(count)
    ]


def get_bodies(rng: random.Random, n: int, count: int = 64) -> list[bytes]:
    """``count`` gets of one record each, of the ``n`` that :func:`load` wrote."""
    return [json.dumps({"ids": [f"v{rng.randrange(n)}"]}).encode() for _ in range(count)]


def add_bodies(rng: random.Random) -> Callable[[], bytes]:
    """Adds of 100 new records each (fresh ids every call): the common write."""
    blobs = [json.dumps([_vec(rng) for _ in range(100)]) for _ in range(16)]
    counter = iter(range(10**9))

    def add_body() -> bytes:
        n = next(counter)
        ids = json.dumps([f"a{n}-{i}" for i in range(100)])
        return f'{{"ids": {ids}, "embeddings": {blobs[n % 16]}}}'.encode()

    return add_body


def upsert_4mb_body(rng: random.Random) -> bytes:
    """One upsert of 500 records (about 4 MB), rewritten in place each time: a body the gateway
    streams to Chroma rather than reads first."""
    return json.dumps(
        {"ids": [f"u{i}" for i in range(500)], "embeddings": [_vec(rng) for _ in range(500)]}
    ).encode()


@contextlib.contextmanager
def loaded(n: int, rng: random.Random) -> Iterator[tuple[Path, Chroma, str]]:
    """A scratch directory, a Chroma in it, and the id of its collection "bench" of ``n`` vectors."""
    with tempfile.TemporaryDirectory() as tmp, run_chroma(Path(tmp) / "chroma") as chroma:
        yield Path(tmp), chroma, load(chroma.url, "bench", n, rng)


def load(url: str, name: str, count: int, rng: random.Random) -> str:
    with httpx.Client(base_url=url, timeout=120) as c:
        col = c.post(f"{D}/collections", json={"name": name, "get_or_create": True}).json()
        for start in range(0, count, 1000):
            ids = [f"v{i}" for i in range(start, min(start + 1000, count))]
            c.post(
                f"{D}/collections/{col['id']}/add",
                json={"ids": ids, "embeddings": [_vec(rng) for _ in ids]},
            ).raise_for_status()
        return str(col["id"])


#: Process id of the server behind each target URL (for CPU accounting: bench/gateway/cpu.py).
PIDS: dict[str, int] = {}


@contextlib.contextmanager
def gateway(
    work: Path,
    chroma_url: str,
    *,
    tls: bool,
    client: str,
    workers: int = 1,
    fast_path: bool = True,
    console: bool = True,
    legacy_clients: bool = True,
    auth: bool = True,
) -> Iterator[str]:
    port = free_port()
    token_file = work / "token"
    token_file.write_text(TOKEN)
    cfg = {
        "chroma": {"url": chroma_url},
        "log": {"level": "WARNING"},
        "gateway": {
            "listen_address": "127.0.0.1",
            "port": port,
            "metrics_port": free_port(),
            "workers": workers,
            "fast_path": fast_path,
            "console": {"enabled": console},
            "legacy_clients": legacy_clients,
            "auth": {
                "enabled": auth,
                "token": {"credentials": [{"name": "bench", "token_file": str(token_file), "role": "admin"}]},
            },
        },
    }
    if tls:
        cert, key, _, _ = make_cert(work, f"gw-{port}")
        cfg["gateway"]["tls"] = {"enabled": True, "cert_file": str(cert), "key_file": str(key)}  # type: ignore[index]
    path = work / f"gateway-{port}.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "CHROMACTL_UPSTREAM_CLIENT": client}
    proc = subprocess.Popen([str(ROOT / ".venv/bin/chromactl"), "gateway", "-c", str(path)], env=env)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/api/v2/heartbeat", verify=False, timeout=1).is_success
        except httpx.HTTPError:
            return False

    PIDS[url] = proc.pid
    try:
        wait_until(up, 30, "the gateway")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def nginx(work: Path, chroma_url: str) -> Iterator[str | None]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        print("nginx not installed (Debian: apt-get install nginx-light); skipping it")
        yield None
        return
    port = free_port()
    prefix = work / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    upstream = chroma_url.removeprefix("http://")
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  client_max_body_size 40m;
  client_body_buffer_size 4m;  # bodies stay in memory (the workers cannot write here)
  upstream chroma {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://chroma;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    )
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)])
    url = f"http://127.0.0.1:{port}"
    PIDS[url] = proc.pid
    try:
        wait_until(lambda: _answers(url), 15, "nginx")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v2/heartbeat", timeout=1).is_success
    except httpx.HTTPError:
        return False


async def drive(
    url: str,
    path: str,
    bodies: list[bytes] | Callable[[], bytes],
    seconds: float,
    concurrency: int = CONCURRENCY,
) -> dict[str, float]:
    """``concurrency`` workers POSTing bodies for ``seconds``; latency percentiles and rate."""
    return summarize([await measure(url, path, bodies, seconds, concurrency)])


def summarize(parts: list[tuple[list[float], int, float]]) -> dict[str, float]:
    """Percentiles and rate over several measured parts (latencies, errors, elapsed seconds)."""
    latencies = sorted(x for lat, _, _ in parts for x in lat)
    elapsed = sum(e for _, _, e in parts)
    return {
        "requests": len(latencies),
        "errors": sum(err for _, err, _ in parts),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def measure(
    url: str,
    path: str,
    bodies: list[bytes] | Callable[[], bytes],
    seconds: float,
    concurrency: int = CONCURRENCY,
) -> tuple[list[float], int, float]:
    """One measured part: the latencies, the error count and the elapsed seconds."""
    latencies: list[float] = []
    errors = 0
    # Self-signed certificate in the TLS case: no verification (not what is measured).
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=False if url.startswith("https") else None)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    deadline = 0.0

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            n = i
            while time.perf_counter() < deadline:
                body = bodies() if callable(bodies) else bodies[n % len(bodies)]
                n += concurrency
                t0 = time.perf_counter()
                async with session.post(url + path, data=body) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        # Warm up connections, then measure.
        deadline = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per case")
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--rounds", type=int, default=4, help="query rounds over all targets")
    args = parser.parse_args()
    rng = random.Random(7)
    queries = query_bodies(rng)
    results: dict[str, dict[str, dict[str, float]]] = {}
    args.load_before = os.getloadavg()[0]  # other work on the machine skews every number
    print(f"1-minute load average: {args.load_before:.2f}")
    with tempfile.TemporaryDirectory() as tmp, run_chroma(Path(tmp) / "chroma") as chroma:
        work = Path(tmp)
        print(f"loading {args.n} x {DIM} vectors")
        col = load(chroma.url, "bench", args.n, rng)
        query_path = f"{D}/collections/{col}/query"
        with contextlib.ExitStack() as stack:
            targets = {
                "direct": chroma.url,
                "gateway": stack.enter_context(gateway(work, chroma.url, tls=False, client="aiohttp")),
                "gateway-asgi": stack.enter_context(
                    gateway(work, chroma.url, tls=False, client="aiohttp", fast_path=False)
                ),
                "gateway-tls": stack.enter_context(gateway(work, chroma.url, tls=True, client="aiohttp")),
                "nginx": stack.enter_context(nginx(work, chroma.url)),
            }
            add_cols = {name: load(chroma.url, f"bench-add-{name}", 0, rng) for name in targets}
            counter = iter(range(10**9))
            # Pre-encoded embeddings; every add gets fresh ids.
            blobs = [json.dumps([_vec(rng) for _ in range(100)]) for _ in range(16)]

            def add_body() -> bytes:
                n = next(counter)
                ids = json.dumps([f"a{n}-{i}" for i in range(100)])
                return f'{{"ids": {ids}, "embeddings": {blobs[n % 16]}}}'.encode()

            live = {name: url for name, url in targets.items() if url is not None}
            parts: dict[tuple[str, str], list[tuple[list[float], int, float]]] = {}
            for _ in range(args.rounds):
                for name, url in live.items():
                    for case, seconds, conc in (
                        ("query", args.seconds, CONCURRENCY),
                        ("query_c1", args.seconds / 2, 1),
                    ):
                        part = asyncio.run(measure(url, query_path, queries, seconds / args.rounds, conc))
                        parts.setdefault((name, case), []).append(part)
            for name, url in live.items():
                results[name] = {}
                for case in ("query", "query_c1"):
                    results[name][case] = summarize(parts[(name, case)])
                    results[name][case]["round_rps"] = [len(p[0]) / p[2] for p in parts[(name, case)]]
                add_path = f"{D}/collections/{add_cols[name]}/add"
                results[name]["add"] = asyncio.run(drive(url, add_path, add_body, args.seconds / 2))
                print(name, json.dumps(results[name]))
    args.load_after = os.getloadavg()[0]
    write(results, args)


def write(results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    meta = {
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "vectors": args.n,
        "dim": DIM,
        "concurrency": CONCURRENCY,
        "seconds_per_case": args.seconds,
        "query_rounds": args.rounds,
        "load_average_1m_before": round(args.load_before, 2),
        "load_average_1m_after": round(args.load_after, 2),
    }
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    direct = results["direct"]
    lines = [
        "# Gateway benchmark results",
        "",
        f"{args.n} x {DIM}-dim vectors, concurrency {CONCURRENCY}, {args.seconds:g} s per query case "
        f"(in {args.rounds} rounds that visit every target in turn) "
        f"({args.seconds / 2:g} s per add case), {meta['cpus']} CPUs, load generator on the same machine; "
        f"1-minute load average {args.load_before:.2f} before the run (the run itself adds to it).",
        "",
        "| target | query req/s | x direct | query p50 ms | added p50 ms | query p99 ms "
        "| 1 client: p50 ms | 1 client: added p50 ms | add (100) req/s | add p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        q, a, q1 = r["query"], r["add"], r["query_c1"]
        lines.append(
            f"| {name} | {q['rps']:.0f} | {q['rps'] / direct['query']['rps']:.2f} | {q['p50_ms']:.2f} | "
            f"{q['p50_ms'] - direct['query']['p50_ms']:+.2f} | {q['p99_ms']:.2f} | {q1['p50_ms']:.2f} | "
            f"{q1['p50_ms'] - direct['query_c1']['p50_ms']:+.2f} | {a['rps']:.0f} | "
            f"{a['p50_ms']:.2f} | {int(q['errors'] + a['errors'] + q1['errors'])} |"
        )
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plt = pyplot()
    if plt is None:
        return
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, [results[n]["query"]["rps"] for n in names], color="#4c72b0")
    axes[0].set_title("query throughput (req/s, higher is better)")
    axes[1].bar(names, [results[n]["query"]["p50_ms"] for n in names], color="#dd8452")
    axes[1].set_title("query p50 latency (ms, lower is better)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle(f"{args.n} x {DIM} vectors, n_results=10, concurrency {CONCURRENCY}, {meta['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=100)


if __name__ == "__main__":
    main()
