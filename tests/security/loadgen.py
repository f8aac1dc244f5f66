"""Load and faults through the gateway: processes and a mixed read/write load generator.

Used by ``tests/security/test_load.py`` (short runs) and ``bench/soak/run.py`` (long runs).
The gateway runs as its own process (``chromactl gateway``) so that its memory can be
read from ``/proc``; Chroma runs as a process that can be killed and started again on the
same port and data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from chromactl.gateway.responses import ORIGIN_HEADER
from tests.gateway.helpers import VENV_BIN, free_port, stop_process, wait_until, write_secret

TOKEN = "ck_load-writer-token-5c2e8a1f"
TENANT = "default_tenant"
DATABASE = "default_database"
D = f"/api/v2/tenants/{TENANT}/databases/{DATABASE}"
DIM = 16


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v2/heartbeat", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ChromaProcess:
    """A Chroma 1.x server that can be killed (SIGKILL) and started again in place."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "chroma.yaml"
        self.config.write_text(
            f"port: {self.port}\nlisten_address: 127.0.0.1\npersist_path: {workdir / 'data'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "chroma.log").open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "chroma"), "run", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until(lambda: _up(self.url), 60, "Chroma to start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class GatewayProcess:
    """``chromactl gateway`` as a process, with one writer token."""

    def __init__(self, workdir: Path, chroma_url: str, **gateway: Any) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = write_secret(workdir, "load.token", TOKEN)
        config = {
            "chroma": {"url": chroma_url},
            "log": {"format": "json"},
            "gateway": {
                "listen_address": "127.0.0.1",
                "port": self.port,
                "metrics_port": self.metrics_port,
                "metrics_address": "127.0.0.1",
                "auth": {
                    "token": {
                        "credentials": [{"name": "load", "token_file": str(token_file), "role": "writer"}]
                    }
                },
                **gateway,
            },
        }
        self.config = workdir / "gateway.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "chromactl"), "gateway", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: _up(self.url), 30, "the gateway to start")

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def stack(workdir: Path, **gateway: Any) -> Iterator[tuple[ChromaProcess, GatewayProcess]]:
    chroma = ChromaProcess(workdir / "chroma")
    gw = GatewayProcess(workdir, chroma.url, **gateway)
    chroma.start()
    try:
        gw.start()
        try:
            yield chroma, gw
        finally:
            gw.stop()
    finally:
        chroma.stop()


def make_collection(gateway_url: str, name: str, seed_records: int = 200) -> str:
    rng = random.Random(1)
    with httpx.Client(base_url=gateway_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        resp = c.post(f"{D}/collections", json={"name": name, "get_or_create": True})
        resp.raise_for_status()
        cid = str(resp.json()["id"])
        ids = [f"seed-{i}" for i in range(seed_records)]
        c.post(
            f"{D}/collections/{cid}/add",
            json={"ids": ids, "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids]},
        ).raise_for_status()
    return cid


@dataclass
class Sample:
    op: str
    status: int  #: 0: no answer (connection error or client timeout)
    latency_s: float
    at: float
    detail: str = ""
    #: ``gateway`` for an answer the gateway made itself, ``chroma`` for one it passed on.
    origin: str = ""


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    #: Record ids whose ``add`` got a 2xx.
    acked: set[str] = field(default_factory=set)
    rss: list[tuple[float, int]] = field(default_factory=list)

    def statuses(self) -> Counter[int]:
        return Counter(s.status for s in self.samples)

    def percentiles(self, op: str | None = None) -> dict[str, float]:
        lat = sorted(s.latency_s for s in self.samples if s.status // 100 == 2 and op in (None, s.op))
        if not lat:
            return {}

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2)

        return {
            "count": len(lat),
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": pct(100),
        }


Judge = Callable[[Sample, dict[str, str], bytes], str | None]


def only_2xx(sample: Sample, headers: dict[str, str], body: bytes) -> str | None:
    """The steady-state rule: every answer is a 2xx."""
    return None if sample.status // 100 == 2 else f"unexpected {sample.status}: {body[:300]!r}"


def _chroma_shaped(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return f"body is not JSON: {body[:300]!r}"
    if not isinstance(doc, dict) or set(doc) != {"error", "message"}:
        return f"body is not Chroma-shaped: {body[:300]!r}"
    return None


@dataclass
class OutageJudge:
    """The rule while Chroma is killed and started again behind the gateway.

    Allowed: a 2xx; the gateway's own refusal (503, ``X-Chromactl-Origin: gateway``,
    ``Retry-After``, Chroma-shaped body); and, once Chroma has been killed, Chroma's own
    5xx error answers, which the gateway passes on untouched. A Chroma 1.x server restarted
    after SIGKILL under writes may answer some requests with ``Error in compaction: Failed
    to apply logs to the hnsw segment writer`` while it replays its log (chroma-core/chroma
    #7678); those are kept in ``chroma_errors`` so that callers can report and bound them.
    Anything else (another status, a 5xx made up by the gateway, a transport error) is a
    problem.
    """

    killed: threading.Event = field(default_factory=threading.Event)
    chroma_errors: list[tuple[float, str, int, str]] = field(default_factory=list)

    def __call__(self, sample: Sample, headers: dict[str, str], body: bytes) -> str | None:
        if sample.status // 100 == 2:
            return None
        made_by_gateway = sample.origin == "gateway"
        if sample.status // 100 == 5 and not made_by_gateway and self.killed.is_set():
            shape = _chroma_shaped(body)
            if shape is not None:
                return f"Chroma {sample.status}: {shape}"
            message = body[:200].decode(errors="replace")
            self.chroma_errors.append((sample.at, sample.op, sample.status, message))
            return None
        if sample.status != 503:
            return f"unexpected {sample.status}: {body[:300]!r}"
        if not made_by_gateway:
            return f"a 503 not made by the gateway: {body[:300]!r}"
        if not headers.get("retry-after", "").isdigit():
            return "503 without Retry-After"
        shape = _chroma_shaped(body)
        return None if shape is None else f"503 {shape}"


async def run_load(
    gateway_url: str,
    collection_id: str,
    *,
    duration_s: float,
    concurrency: int = 64,
    write_share: float = 0.3,
    request_timeout_s: float = 15.0,
    rss_of: Callable[[], int] | None = None,
    rss_every_s: float = 1.0,
    judge: Judge = only_2xx,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> tuple[LoadResult, list[str]]:
    """Mixed ``query``/``get``/``add`` from ``concurrency`` workers; (result, problems).

    Runs ``duration_s``, or until ``stop`` is set when one is given (``duration_s`` is
    then the longest it runs).
    """
    result = LoadResult()
    problems: list[str] = []
    base = f"{gateway_url}{D}/collections/{collection_id}"
    start = time.monotonic()
    end = start + duration_s
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        i = 0
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            while time.monotonic() < end and not (stop is not None and stop.is_set()):
                i += 1
                roll = rng.random()
                ids: list[str] = []
                if roll < write_share:
                    op = "add"
                    ids = [f"w{seed}-{n}-{i}-{k}" for k in range(5)]
                    body: dict[str, Any] = {
                        "ids": ids,
                        "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids],
                        "documents": [f"doc {x}" for x in ids],
                    }
                elif roll < write_share + (1 - write_share) * 0.6:
                    op = "query"
                    body = {"query_embeddings": [[rng.random() for _ in range(DIM)]], "n_results": 5}
                else:
                    op = "get"
                    body = {"ids": [f"seed-{rng.randrange(200)}" for _ in range(5)]}
                t0 = time.monotonic()
                status, rh, data, detail = 0, {}, b"", ""
                try:
                    async with session.post(f"{base}/{op}", json=body) as resp:
                        data = await resp.read()
                        status, rh = resp.status, {k.lower(): v for k, v in resp.headers.items()}
                except TimeoutError:
                    detail = f"no answer within {request_timeout_s}s"
                except aiohttp.ClientError as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                origin = ("gateway" if rh.get(ORIGIN_HEADER) == "gateway" else "chroma") if status else ""
                sample = Sample(op, status, time.monotonic() - t0, t0 - start, detail, origin)
                result.samples.append(sample)
                if op == "add" and status // 100 == 2:
                    result.acked.update(ids)
                verdict = judge(sample, rh, data) if status else (detail or "no answer")
                if verdict is not None:
                    problems.append(f"{op} at {sample.at:.1f}s: {verdict}")

    async def sample_rss() -> None:
        while rss_of is not None and time.monotonic() < end and not (stop is not None and stop.is_set()):
            result.rss.append((round(time.monotonic() - start, 2), rss_of()))
            await asyncio.sleep(rss_every_s)

    await asyncio.gather(sample_rss(), *(worker(n) for n in range(concurrency)))
    if rss_of is not None:
        result.rss.append((round(time.monotonic() - start, 2), rss_of()))
    return result, problems


def missing_acked(chroma_url: str, collection_id: str, acked: set[str]) -> set[str]:
    """Acknowledged ids that Chroma does not have (read from Chroma directly)."""
    present: set[str] = set()
    ids = sorted(acked)
    with httpx.Client(base_url=chroma_url, timeout=60) as c:
        for k in range(0, len(ids), 500):
            resp = c.post(
                f"{D}/collections/{collection_id}/get", json={"ids": ids[k : k + 500], "include": []}
            )
            resp.raise_for_status()
            present.update(resp.json()["ids"])
    return acked - present


def gateway_pid_alive(gw: GatewayProcess) -> bool:
    return gw.proc is not None and gw.proc.poll() is None and os.path.exists(f"/proc/{gw.proc.pid}")
