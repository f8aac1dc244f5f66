"""High availability: what it costs a write, what the standby costs, how far it lags, and how
long a failover takes, on this machine, as ratios against the gateway with HA off in the same run.

Every pod is a process of its own (``bench/ha/pod.py``) in front of its own real Chroma, with the
fake Kubernetes API server of the tests (``tests/chart/fake_kube.py``) in this process; pods
listen on their own loopback addresses (127.0.0.11, 127.0.0.12), which are also their pod names.
CPU times are user + system from ``/proc`` for each pod process and each Chroma's process tree.
The write modes, lag, idle and profile runs pin the primary pod to one CPU and the standby pod and
the load generator to the other (a node per pod, as the chart's anti-affinity has it); each write
mode also runs unpinned first.

Workloads (README.md says what each stands for):

  write     one client, batches of 10 records (384-dim + a document) into one collection
            preloaded with --preload records: HA off, HA asynchronous, HA synchronous
  standby   the standby's CPU per replicated write against the primary's (from the write runs)
  lag       a steady writer (--rate batches/s) while the standby's lag is sampled every 100 ms
  failover  the primary pod (gateway and Chroma) SIGKILLed under a writer that retries on both
            pods; RTO = kill to the first write the other pod acknowledges; acked records lost;
            the killed pod made again (prepare(), Chroma, gateway) once the lease has moved.
            Chart default lease timings (15 s / 10 s / 2 s); asynchronous and synchronous pairs.
  profile   py-spy on the primary gateway under the write load, HA off and async

Writes results.json, results.md and results.png (with matplotlib) here.

    .venv/bin/python bench/ha/run.py [--seconds 20] [--preload 20000] [--failovers 20] [--sync-failovers 5]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.plot import pyplot  # noqa: E402
from tests.chart.fake_kube import FakeCluster  # noqa: E402
from tests.chart.servers import serve  # noqa: E402
from tests.gateway.helpers import Chroma, free_port, run_chroma, wait_until  # noqa: E402

from chromactl.config import parse_config  # noqa: E402
from chromactl.ha.cli import prepare  # noqa: E402
from chromactl.ha.kubeapi import KubeApi  # noqa: E402

DIM = 384
BATCH = 10
D = "/api/v2/tenants/default_tenant/databases/default_database"
A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"
SA, SB, FA, FB = "127.0.0.14", "127.0.0.15", "127.0.0.16", "127.0.0.17"
FSA, FSB = "127.0.0.18", "127.0.0.19"
LEASE = "chroma-leader"
#: Lease timings of the cost and lag runs: the chart's too (the tests' short ones fenced the preload here).
FAST = {"lease_duration_s": 15.0, "renew_deadline_s": 10.0, "retry_period_s": 2.0}  # see README
CHART = {"lease_duration_s": 15.0, "renew_deadline_s": 10.0, "retry_period_s": 2.0}
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the children of every thread, not only the main one's)."""
    out = [pid]
    for tid in threads(pid):
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                out += tree(int(child))
    return out


ALL_CPUS = frozenset(os.sched_getaffinity(0))
#: Where each pod runs when pinned: the primary pod on one CPU, the standby pod and the load
#: generator on the other, as with the chart's anti-affinity (a node per pod), on a 2-CPU machine.
CPU_PRIMARY, CPU_OTHER = (sorted(ALL_CPUS) + sorted(ALL_CPUS))[:2]


def pin(pid: int, cpus: frozenset[int] | set[int]) -> None:
    """Every thread of ``pid`` and of its descendants onto ``cpus`` (threads and processes they
    start later inherit it from their creator)."""
    for p in tree(pid):
        for tid in threads(p):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def placed(primary: Pod, standby: Pod | None, pinned: bool) -> Iterator[None]:
    """Pinned: the primary pod (gateway and Chroma) on ``CPU_PRIMARY``; the standby pod and this
    thread (the load generator, and whatever it starts) on ``CPU_OTHER``. Undone on exit."""
    pods = [primary] + ([standby] if standby is not None else [])
    if pinned:
        for pod, cpu in zip(pods, (CPU_PRIMARY, CPU_OTHER), strict=False):
            pin(pod.proc.pid, {cpu})
            pin(pod.chroma.process.pid, {cpu})
        os.sched_setaffinity(0, {CPU_OTHER})
    try:
        yield
    finally:
        if pinned:
            os.sched_setaffinity(0, ALL_CPUS)
            for pod in pods:
                pin(pod.proc.pid, ALL_CPUS)
                pin(pod.chroma.process.pid, ALL_CPUS)


def cpu_s(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * TICK_S
    return total


def runq_s(pid: int) -> float:
    """Seconds the threads of ``pid`` and its descendants have waited for a CPU while runnable
    (``/proc/<pid>/task/<tid>/schedstat``, second field)."""
    total = 0
    for p in tree(pid):
        for tid in threads(p):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9


def client_sched() -> tuple[float, float]:
    """CPU seconds and run-queue wait seconds of this thread (the load generator)."""
    fields = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class Pod:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    chroma: Chroma
    chroma_stack: contextlib.ExitStack
    config: dict[str, Any]

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(self.url + "/chromactl/v1/ha/status", timeout=5).json()
        return found


@dataclass
class Cluster:
    work: Path
    kube_url: str
    port: int
    kube: FakeCluster
    pods: dict[str, Pod] = field(default_factory=dict)
    #: pods that did not exit within 30 s of SIGTERM (then SIGKILLed)
    hung: list[str] = field(default_factory=list)

    def config(self, name: str, chroma: Chroma, ha: dict[str, Any] | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data")},
            "log": {"level": "WARNING"},
            "gateway": {
                "listen_address": name,
                "port": self.port,
                "metrics_port": None,
                "auth": {"enabled": False},
            },
        }
        if ha is not None:
            cfg["ha"] = {
                "enabled": True,
                "lease_name": LEASE,
                "pod_name": name,
                "peer_url": f"http://{{pod}}:{self.port}",
                "state_dir": str(self.work / f"state-{name}"),
                **ha,
            }
        return cfg

    def start_chroma(self, name: str) -> tuple[Chroma, contextlib.ExitStack]:
        stack = contextlib.ExitStack()
        chroma = stack.enter_context(run_chroma(self.work / f"chroma-{name}"))
        return chroma, stack

    def start_pod(
        self, name: str, ha: dict[str, Any] | None, chroma: tuple[Chroma, contextlib.ExitStack]
    ) -> Pod:
        cfg = self.config(name, chroma[0], ha)
        path = self.work / f"pod-{name}.json"
        path.write_text(json.dumps(cfg))
        log = (self.work / f"pod-{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "pod.py"), str(path), f"http://{self.kube_url}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        pod = Pod(name, f"http://{name}:{self.port}", proc, chroma[0], chroma[1], cfg)

        def up() -> bool:
            try:
                return httpx.get(pod.url + "/api/v2/heartbeat", timeout=1).status_code < 500
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_until(up, 60, f"pod {name}")
        if proc.poll() is not None:
            tail = (self.work / f"pod-{name}.log").read_text()[-3000:]
            raise RuntimeError(f"pod {name} exited:\n{tail}")
        self.pods[name] = pod
        return pod

    def deleted(self, name: str) -> bool:
        """True when the pod deleted its own Pod object (a standby that must be rebuilt does)."""
        return self.kube.find("Pod", name, "default") is None

    def init_and_start(self, name: str, ha: dict[str, Any]) -> bool:
        """The pod made again as its StatefulSet would: the Pod object, the init container
        (``prepare``: keeps its data if it can follow, else a base copy), Chroma, the gateway.
        True when it was rebuilt."""
        if self.deleted(name):
            self.kube.add(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {}}}, "default"
            )
        chroma_dir = self.work / f"chroma-{name}"
        settings = parse_config(self.config(name, Chroma("http://127.0.0.1:1", None, chroma_dir), ha))  # type: ignore[arg-type]
        rebuilt = prepare(settings, KubeApi(f"http://{self.kube_url}", "default", timeout_s=2.0), wait_s=120)
        self.start_pod(name, ha, self.start_chroma(name))
        return rebuilt

    def holder(self, lease: str) -> str | None:
        found = self.kube.find("Lease", lease, "default")
        return ((found or {}).get("spec") or {}).get("holderIdentity") or None

    def stop_pod(self, name: str, *, kill: bool = False, chroma_too: bool = True) -> None:
        pod = self.pods.pop(name)
        if kill:
            pod.proc.kill()
            if chroma_too:
                pod.chroma.process.kill()
        else:
            pod.proc.terminate()
        try:
            pod.proc.wait(30)
        except subprocess.TimeoutExpired:
            tail = (self.work / f"pod-{name}.log").read_text()[-1500:]
            print(
                f"pod {name} did not stop within 30 s of SIGTERM: killed; its log ends:\n{tail}", flush=True
            )
            self.hung.append(name)
            pod.proc.kill()
            pod.proc.wait(10)
        if chroma_too:
            pod.chroma_stack.close()


class Records:
    """Batches of 10 new records: 384-dim embeddings and a document each (unique ids)."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.blobs = [
            json.dumps([[rng.random() for _ in range(DIM)] for _ in range(BATCH)]) for _ in range(16)
        ]
        self.docs = json.dumps([f"document {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(BATCH)])
        self.n = 0

    def body(self, prefix: str) -> tuple[list[str], bytes]:
        n = self.n
        self.n += 1
        ids = [f"{prefix}{n}-{i}" for i in range(BATCH)]
        return (
            ids,
            f'{{"ids": {json.dumps(ids)}, "embeddings": {self.blobs[n % 16]}, "documents": {self.docs}}}'.encode(),
        )


def create(url: str, name: str = "big") -> str:
    """The collection, retried while the primary answers 503 (a synchronous primary does until
    its standby has connected)."""
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.post(f"{url}{D}/collections", json={"name": name, "get_or_create": True}, timeout=30)
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    answer.raise_for_status()
    return str(answer.json()["id"])


def preload(url: str, cid: str, count: int) -> None:
    rng = random.Random(3)
    blob = [[rng.random() for _ in range(DIM)] for _ in range(500)]
    with httpx.Client(base_url=url, timeout=300) as c:
        for start in range(0, count, 500):
            ids = [f"p{i}" for i in range(start, min(start + 500, count))]
            c.post(
                f"{D}/collections/{cid}/add",
                json={"ids": ids, "embeddings": blob[: len(ids)], "documents": [f"doc {i}" for i in ids]},
            ).raise_for_status()


def write_run(url: str, cid: str, seconds: float, records: Records, prefix: str) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _, body = records.body(prefix)
            t = time.perf_counter()
            c.post(f"{D}/collections/{cid}/add", content=body).raise_for_status()
            latencies.append(time.perf_counter() - t)
    return latencies


def caught_up(primary: Pod, standby: Pod) -> bool:
    try:
        return bool(standby.status()["applied"] >= primary.status()["last_index"])
    except (httpx.HTTPError, KeyError):
        return False


def measure_writes(
    primary: Pod, standby: Pod | None, cid: str, seconds: float, records: Records, prefix: str
) -> dict[str, float]:
    pids = {"primary": primary.proc.pid, "primary_chroma": primary.chroma.process.pid}
    if standby is not None:
        pids |= {"standby": standby.proc.pid, "standby_chroma": standby.chroma.process.pid}
    write_run(primary.url, cid, 2.0, records, prefix + "warm")  # warm-up, not measured
    if standby is not None:
        wait_until(lambda: caught_up(primary, standby), 120, "the standby after the warm-up")
    before = {k: cpu_s(p) for k, p in pids.items()}
    waits = {k: runq_s(p) for k, p in pids.items() if k.startswith("primary")}
    client = client_sched()
    lat = write_run(primary.url, cid, seconds, records, prefix)
    client_after = client_sched()
    waits = {k: runq_s(p) - waits[k] for k, p in pids.items() if k.startswith("primary")}
    after = {k: cpu_s(p) for k, p in pids.items() if k.startswith("primary")}
    drain = 0.0
    if standby is not None:
        t = time.monotonic()
        wait_until(lambda: caught_up(primary, standby), 300, "the standby to apply the run")
        drain = time.monotonic() - t
        after |= {k: cpu_s(p) for k, p in pids.items() if k.startswith("standby")}
    n = len(lat)
    out: dict[str, float] = {
        "requests": n,
        "rps": n / seconds,
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
        "standby_drain_s": drain,
    }
    for k in pids:
        out[f"{k}_cpu_ms"] = (after[k] - before[k]) * 1000 / n
    for k, v in waits.items():
        out[f"{k}_runq_ms"] = v * 1000 / n
    out["client_cpu_ms"] = (client_after[0] - client[0]) * 1000 / n
    out["client_runq_ms"] = (client_after[1] - client[1]) * 1000 / n
    return out


def idle_cpu(pods: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU ms per second of each process (``pods``: name to pid) with no requests at all: what
    a pod burns on its own (lease renewals, the replication stream's keep-alives)."""
    before = {k: cpu_s(p) for k, p in pods.items()}
    time.sleep(seconds)
    return {k: (cpu_s(p) - before[k]) * 1000 / seconds for k, p in pods.items()}


def lag_run(
    primary: Pod, standby: Pod, cid: str, seconds: float, rate: float, records: Records
) -> dict[str, Any]:
    stop = threading.Event()
    samples: list[tuple[float, float, int, int]] = []

    def sampler() -> None:
        with httpx.Client(timeout=5) as c:
            t0 = time.monotonic()
            while not stop.is_set():
                t = time.monotonic()
                with contextlib.suppress(httpx.HTTPError, KeyError):
                    p = c.get(primary.url + "/chromactl/v1/ha/status").json()
                    s = c.get(standby.url + "/chromactl/v1/ha/status").json()
                    samples.append((s["lag_s"], t - t0, s["lag_entries"], p["last_index"] - s["applied"]))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    lat = []
    late = 0
    with httpx.Client(base_url=primary.url, timeout=60, headers={"content-type": "application/json"}) as c:
        start = time.monotonic()
        for i in range(int(seconds * rate)):
            due = start + i / rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                late += 1
            _, body = records.body("lag")
            t = time.perf_counter()
            c.post(f"{D}/collections/{cid}/add", content=body).raise_for_status()
            lat.append(time.perf_counter() - t)
        elapsed = time.monotonic() - start
    stop.set()
    thread.join(5)
    lag_s = [x[0] for x in samples]
    entries = [float(x[2]) for x in samples]
    behind = [float(x[3]) for x in samples]
    return {
        "writes": len(lat),
        "achieved_rate": len(lat) / elapsed,
        "late_writes": late,
        "samples": len(samples),
        "lag_s": {"p50": pct(lag_s, 0.5), "p99": pct(lag_s, 0.99), "max": max(lag_s)},
        "lag_entries": {"p50": pct(entries, 0.5), "p99": pct(entries, 0.99), "max": max(entries)},
        "last_minus_applied": {"p50": pct(behind, 0.5), "p99": pct(behind, 0.99), "max": max(behind)},
        "series": [[x[1], x[0], x[3]] for x in samples],
    }


class Writer:
    """One record batch at a time to whichever pod takes it (as a client retrying through the
    Service would): every id acknowledged, by which pod and when."""

    def __init__(self, pods: list[Pod], cid: str, records: Records) -> None:
        self.pods, self.cid, self.records = pods, cid, records
        self.acked: list[tuple[float, str, list[str]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # above ha.synchronous_timeout_s (10 s): a synchronous write may wait that long for a standby
        with httpx.Client(timeout=15, headers={"content-type": "application/json"}) as c:
            ids, body = self.records.body("fo")
            while not self.stop.is_set():
                for pod in list(self.pods):
                    try:
                        answer = c.post(f"{pod.url}{D}/collections/{self.cid}/add", content=body)
                    except httpx.HTTPError:
                        continue
                    if answer.is_success:  # Chroma answers an add 201
                        self.acked.append((time.monotonic(), pod.name, ids))
                        ids, body = self.records.body("fo")
                        break
                time.sleep(0.05)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)


def present(pod: Pod, cid: str, ids: list[str]) -> set[str]:
    found = httpx.post(f"{pod.url}{D}/collections/{cid}/get", json={"ids": ids, "include": []}, timeout=60)
    found.raise_for_status()
    return set(found.json()["ids"])


def failover_rounds(
    cluster: Cluster, cid: str, rounds: int, records: Records, out: list[dict[str, Any]], label: str
) -> None:
    """SIGKILL the primary pod (gateway and Chroma) under a writer retrying on both pods. The
    killed pod is made again once the lease has moved (as a pod rescheduled after its node was
    lost): the init step, then Chroma and the gateway; it rejoins as a standby."""
    for r in range(rounds):
        primary = primary_of(cluster, tuple(cluster.pods))
        standby = next(p for p in cluster.pods.values() if p is not primary)
        lease = primary.config["ha"]["lease_name"]
        ha = primary.config["ha"]
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: caught_up(primary, standby), 30, "the standby before the kill")
        rejoin: dict[str, Any] = {}

        def restart() -> None:
            try:
                wait_until(
                    lambda: cluster.holder(lease) not in (None, primary.name), 120, "the lease to move"
                )
                t = time.monotonic()
                rejoin["rebuilt"] = cluster.init_and_start(primary.name, ha)
                rejoin["started_s"] = time.monotonic() - t
            except Exception as exc:  # reported below
                rejoin["error"] = repr(exc)

        with Writer([primary, standby], cid, records) as writer:
            wait_until(lambda: len(writer.acked) >= 20, 60, "writes before the kill")
            killed = time.monotonic()
            cluster.stop_pod(primary.name, kill=True)
            thread = threading.Thread(target=restart, daemon=True)
            thread.start()
            wait_until(
                lambda: any(a[1] == standby.name and a[0] > killed for a in writer.acked),
                180,
                "a write acknowledged by the new primary",
            )
            first = min(a[0] for a in writer.acked if a[1] == standby.name and a[0] > killed)
            time.sleep(1.0)
        thread.join(300)
        if "error" in rejoin:
            raise RuntimeError(f"the killed pod did not come back: {rejoin['error']}")
        by_old = [i for a in writer.acked if a[1] == primary.name for i in a[2]]
        lost = len(by_old) - len(present(standby, cid, by_old))
        rto = first - killed
        back = cluster.pods[primary.name]
        redone = 0
        deadline = time.monotonic() + 180
        stuck = 0
        while not caught_up(standby, back):
            if cluster.deleted(primary.name):  # it must be rebuilt: its init container does it
                cluster.stop_pod(primary.name)
                cluster.init_and_start(primary.name, ha)
                back = cluster.pods[primary.name]
                redone += 1
            if time.monotonic() > deadline:
                stuck = standby.status()["last_index"] - back.status()["applied"]
                print(f"the restarted pod stays {stuck} entries behind", flush=True)
                break
            time.sleep(0.2)
        rejoined = time.monotonic() - killed
        print(
            f"failover {label} {r + 1}/{rounds}: RTO {rto:.1f} s, acked writes lost {lost} of {len(by_old)}, "
            f"rebuilt {rejoin['rebuilt']}, in sync again {rejoined:.1f} s after the kill",
            flush=True,
        )
        out.append(
            {
                "rto_s": rto,
                "acked_lost": lost,
                "acked_by_old": len(by_old),
                "rebuilt": rejoin["rebuilt"],
                "self_deleted_after_start": redone,
                "rejoin_s": rejoined,
                "stuck_behind": stuck,
            }
        )


PY_SPY = Path(sys.executable).parent / "py-spy"


def profile(pod: Pod, cid: str, seconds: float, records: Records, prefix: str, raw: Path) -> dict[str, Any]:
    """py-spy (sampling, non-blocking, CPU only) on the pod's gateway process while one client
    writes for ``seconds``: the functions the gateway's CPU goes to, inclusive and self, as a
    share of the samples, with the requests answered."""
    if not PY_SPY.exists():
        return {"error": "py-spy not installed"}
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "-p",
            str(pod.proc.pid),
            "-d",
            str(int(seconds) + 1),
            "-r",
            "200",
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    n = len(write_run(pod.url, cid, seconds, records, prefix))
    spy.wait(60)
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            path = where.rsplit(":", 1)[0].rstrip(")")
            frames.append(f"{name} ({'/'.join(Path(path).parts[-2:])})")
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + k
        own[frames[-1]] = own.get(frames[-1], 0) + k

    def top(d: dict[str, int], count: int) -> list[list[Any]]:
        return [[f, v / total] for f, v in sorted(d.items(), key=lambda x: -x[1])[:count]]

    return {
        "requests": n,
        "samples": total,
        "samples_per_request": total / max(n, 1),
        "inclusive": top(inclusive, 40),
        "self": top(own, 25),
    }


def write_modes(
    results: dict[str, Any],
    mode: str,
    primary: Pod,
    standby: Pod | None,
    cid: str,
    args: argparse.Namespace,
    records: Records,
) -> None:
    """The write load on one mode: unpinned (every process on every CPU; ``<mode>_unpinned``),
    then pinned as a pod per node would be (``<mode>``), on the same pods."""
    if not args.no_unpinned:
        results[f"{mode}_unpinned"] = measure_writes(primary, standby, cid, args.seconds, records, mode + "u")
        print(f"{mode} unpinned", results[f"{mode}_unpinned"], flush=True)
    pinned = len(ALL_CPUS) >= 2
    with placed(primary, standby, pinned):
        results[mode] = measure_writes(primary, standby, cid, args.seconds, records, mode)
    results[mode]["pinned"] = pinned
    print(f"{mode} pinned", results[mode], flush=True)


def primary_of(cluster: Cluster, names: tuple[str, ...] = (A, B)) -> Pod:
    pods = [cluster.pods[n] for n in names if n in cluster.pods]

    def found() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return any(p.status()["role"] == "primary" for p in pods)
        return False

    wait_until(found, 60, "a primary")
    return next(p for p in pods if p.status()["role"] == "primary")


def standby_ready(primary: Pod, standby: Pod, work: Path | None = None) -> None:
    try:
        wait_until(
            lambda: caught_up(primary, standby) and standby.status()["role"] != "primary", 60, "the standby"
        )
    except TimeoutError:
        for pod in (primary, standby):
            with contextlib.suppress(Exception):
                print(pod.name, pod.status())
            if work is not None:
                print((work / f"pod-{pod.name}.log").read_text()[-2000:])
        raise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per write mode")
    parser.add_argument("--preload", type=int, default=20_000, help="records in the big collection")
    parser.add_argument("--rate", type=float, default=20.0, help="batches/s of the lag run's writer")
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--failovers", type=int, default=20, help="asynchronous failover rounds (0: none)")
    parser.add_argument("--sync-failovers", type=int, default=5, help="synchronous failover rounds (0: none)")
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="py-spy on the primary gateway, off and async (0: none)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="CPU of idle gateways, off and async (0: none)"
    )
    parser.add_argument(
        "--no-unpinned", action="store_true", help="measure the write modes pinned only (see README)"
    )
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    pinned = len(ALL_CPUS) >= 2
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    records = Records()
    results: dict[str, Any] = {}
    kube = FakeCluster()
    for name in (A, B, SA, SB, FA, FB, FSA, FSB):
        kube.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {}}}, "default")
    with tempfile.TemporaryDirectory() as tmp, serve(kube.handler()) as kube_url:
        cluster = Cluster(Path(tmp), kube_url, free_port(), kube)
        try:
            # (a) HA off: a plain gateway (one process) on a Chroma of its own with the same preload
            off = cluster.start_pod(C, None, cluster.start_chroma(C))
            cid = create(off.url)
            t = time.monotonic()
            preload(off.url, cid, args.preload)
            print(f"preloaded {args.preload} records (HA off) in {time.monotonic() - t:.0f} s", flush=True)
            write_modes(results, "off", off, None, cid, args, records)
            with placed(off, None, pinned):
                if args.idle_seconds:
                    results["idle_off"] = idle_cpu({"primary": off.proc.pid}, args.idle_seconds)
                if args.profile_seconds:
                    results["profile_off"] = profile(
                        off, cid, args.profile_seconds, records, "prof", cluster.work / "pyspy-off.txt"
                    )
            cluster.stop_pod(C)

            # (b) HA asynchronous: primary A and standby B; the preload replicates to B
            chromas = {n: cluster.start_chroma(n) for n in (A, B)}
            cluster.start_pod(A, FAST, chromas[A])
            primary = primary_of(cluster)
            cluster.start_pod(B, FAST, chromas[B])
            standby = cluster.pods[B]
            cid = create(primary.url)
            t = time.monotonic()
            preload(primary.url, cid, args.preload)
            standby_ready(primary, standby)
            print(
                f"preloaded {args.preload} records (HA) and replicated in {time.monotonic() - t:.0f} s",
                flush=True,
            )
            write_modes(results, "async", primary, standby, cid, args, records)
            with placed(primary, standby, pinned):
                results["lag"] = lag_run(primary, standby, cid, args.lag_seconds, args.rate, records)
                print("lag", {k: v for k, v in results["lag"].items() if k != "series"}, flush=True)
                if args.idle_seconds:
                    wait_until(lambda: caught_up(primary, standby), 120, "the standby after the lag run")
                    time.sleep(1.0)
                    results["idle_async"] = idle_cpu(
                        {"primary": primary.proc.pid, "standby": standby.proc.pid}, args.idle_seconds
                    )
                    print("idle", results["idle_off"], results["idle_async"], flush=True)
                if args.profile_seconds:
                    results["profile_async"] = profile(
                        primary, cid, args.profile_seconds, records, "prof", cluster.work / "pyspy-async.txt"
                    )
                    for k in ("profile_off", "profile_async"):
                        print(k, json.dumps(results[k])[:3000], flush=True)

            # (c) HA synchronous: a fresh pair (own Chromas, Lease and state) with the same preload.
            # Restarting the async pair instead leaves its standby one entry behind for good (see README).
            sync = {**FAST, "synchronous": True, "lease_name": "chroma-leader-sync"}
            primary = cluster.start_pod(SA, sync, cluster.start_chroma(SA))
            primary = primary_of(cluster, (SA, SB))
            standby = cluster.start_pod(SB, sync, cluster.start_chroma(SB))
            cid = create(primary.url)
            preload(primary.url, cid, args.preload)
            standby_ready(primary, standby, cluster.work)
            write_modes(results, "sync", primary, standby, cid, args, records)
            for name in list(cluster.pods):
                cluster.stop_pod(name)

            # (d) failover with the chart's lease timings: fresh pairs (own Chromas, Lease, state)
            for label, rounds, pair, extra in (
                ("async", args.failovers, (FA, FB), {}),
                ("sync", args.sync_failovers, (FSA, FSB), {"synchronous": True}),
            ):
                if not rounds:
                    continue
                fo = {**CHART, **extra, "lease_name": f"chroma-leader-fo-{label}"}
                cluster.start_pod(pair[0], fo, cluster.start_chroma(pair[0]))
                primary = primary_of(cluster, pair)
                standby = cluster.start_pod(pair[1], fo, cluster.start_chroma(pair[1]))
                cid = create(primary.url, "failover")
                standby_ready(primary, standby, cluster.work)
                key = f"failover_{label}"
                results[key] = []
                try:
                    failover_rounds(cluster, cid, rounds, records, results[key], label)
                except (TimeoutError, RuntimeError) as exc:
                    print(f"failover {label} stopped: {exc}", flush=True)
                    for name in pair:
                        with contextlib.suppress(OSError):
                            print((cluster.work / f"pod-{name}.log").read_text()[-3000:], flush=True)
                    results[f"{key}_error"] = str(exc)
                for name in list(cluster.pods):
                    cluster.stop_pod(name)
        finally:
            for name in list(cluster.pods):
                with contextlib.suppress(Exception):
                    cluster.stop_pod(name)
    results["sigterm_hung"] = cluster.hung
    results["meta"] = {
        "elapsed_s": time.monotonic() - t_start,
        "chromactl": str(Path(importlib.import_module("chromactl").__file__ or "").parent),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_before": load_before,
        "command": "python bench/ha/run.py " + " ".join(sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_md(results, args.out)
    plot(results, args.out)


def goals(r: dict[str, Any]) -> list[str]:
    """Each goal, met or missed and by how much."""
    out = []
    ratio = r["async"]["mean_ms"] / r["off"]["mean_ms"]
    verdict = "met" if ratio <= 1.10 else f"missed by {ratio - 1.10:.2f}x"
    out.append(f"- async write latency <= 1.10x of HA off (pinned, mean): {ratio:.2f}x, **{verdict}**")
    if "async_unpinned" in r and "off_unpinned" in r:
        u = r["async_unpinned"]["mean_ms"] / r["off_unpinned"]["mean_ms"]
        out.append(f"  (unpinned, every process on both CPUs: {u:.2f}x, not the goal's measure)")
    p99 = r["lag"]["lag_s"]["p99"]
    verdict = "met" if p99 <= 1.0 else f"missed by {p99 - 1.0:.2f} s"
    out.append(f"- lag p99 <= 1 s: {p99:.2f} s, **{verdict}**")
    for label in ("async", "sync"):
        fo = r.get(f"failover_{label}")
        if fo:
            p = pct([x["rto_s"] for x in fo], 0.99)
            verdict = "met" if p <= 30.0 else f"missed by {p - 30.0:.1f} s"
            out.append(
                f"- RTO p99 <= 30 s with default settings, {label} ({len(fo)} rounds): {p:.1f} s, **{verdict}**"
            )
    return out


def write_md(r: dict[str, Any], out: Path) -> None:
    m = r["meta"]
    lines = [
        "# High availability benchmark",
        "",
        f"{m['date']}, {m['machine']}, Python {m['python']}; load average before: {m['load_before']:.2f}; "
        f"{m.get('elapsed_s', 0) / 60:.0f} min.",
        f"Command: `{m['command']}` (preload {m['args']['preload']} records, {m['args']['seconds']:g} s per write mode).",
        "CPU is user + system from /proc over the measured interval (the standby's until it has applied",
        "the whole run), per request. Pinned: the primary pod (gateway and Chroma) on CPU "
        f"{CPU_PRIMARY}, the standby pod and the load generator on CPU {CPU_OTHER}; unpinned: all on both.",
        "",
        "Pods that did not exit within 30 s of SIGTERM (then SIGKILLed): "
        + (", ".join(r.get("sigterm_hung", [])) or "none")
        + ".",
        "",
        "Goals:",
        "",
        *goals(r),
        "",
        "## Write cost (batches of 10 x 384-dim records + documents, one client, big collection)",
        "",
        "| mode | placement | requests | req/s | p50 ms | p99 ms | mean ms | gateway CPU ms/req | Chroma CPU ms/req "
        "| standby gw CPU ms/req | standby Chroma CPU ms/req | latency vs off (mean) | primary gw CPU vs off "
        "| primary pod CPU vs off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for suffix, placement in (("", "pinned"), ("_unpinned", "unpinned")):
        off = r.get("off" + suffix)
        if off is None:
            continue
        for mode in ("off", "async", "sync"):
            x = r[mode + suffix]
            sb = f"{x['standby_cpu_ms']:.2f}" if "standby_cpu_ms" in x else "-"
            sc = f"{x['standby_chroma_cpu_ms']:.2f}" if "standby_chroma_cpu_ms" in x else "-"
            pod = x["primary_cpu_ms"] + x["primary_chroma_cpu_ms"]
            pod_off = off["primary_cpu_ms"] + off["primary_chroma_cpu_ms"]
            lines.append(
                f"| {mode} | {placement} | {x['requests']} | {x['rps']:.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
                f"{x['mean_ms']:.1f} | {x['primary_cpu_ms']:.2f} | {x['primary_chroma_cpu_ms']:.2f} | {sb} | {sc} | "
                f"{x['mean_ms'] / off['mean_ms']:.2f}x | {x['primary_cpu_ms'] / off['primary_cpu_ms']:.2f}x | "
                f"{pod / pod_off:.2f}x |"
            )
    lines += [
        "",
        "## Waiting for a CPU (from the write runs: run-queue wait per write, /proc schedstat)",
        "",
        "| mode | placement | mean latency ms | client CPU ms/req | client run-queue wait ms/req "
        "| primary gateway threads' wait ms/req | primary Chroma threads' wait ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for suffix, placement in (("", "pinned"), ("_unpinned", "unpinned")):
        for mode in ("off", "async", "sync"):
            x = r.get(mode + suffix)
            if x is None or "client_runq_ms" not in x:
                continue
            lines.append(
                f"| {mode} | {placement} | {x['mean_ms']:.1f} | {x['client_cpu_ms']:.2f} | {x['client_runq_ms']:.2f} | "
                f"{x['primary_runq_ms']:.2f} | {x['primary_chroma_runq_ms']:.2f} |"
            )
    lines += [
        "",
        "## Standby cost (from the write runs)",
        "",
        "| mode | placement | standby gateway / primary gateway CPU per write | standby Chroma / primary Chroma CPU per write |",
        "|---|---|---|---|",
    ]
    for suffix, placement in (("", "pinned"), ("_unpinned", "unpinned")):
        for mode in ("async", "sync"):
            x = r.get(mode + suffix)
            if x is None:
                continue
            lines.append(
                f"| {mode} | {placement} | {x['standby_cpu_ms'] / x['primary_cpu_ms']:.2f} | "
                f"{x['standby_chroma_cpu_ms'] / x['primary_chroma_cpu_ms']:.2f} |"
            )
    if "idle_off" in r and "idle_async" in r:
        lines += [
            "",
            f"## Idle gateways (no requests, {m['args']['idle_seconds']:g} s, pinned)",
            "",
            "| gateway | CPU ms per second |",
            "|---|---|",
            f"| HA off | {r['idle_off']['primary']:.1f} |",
            f"| async primary | {r['idle_async']['primary']:.1f} |",
            f"| async standby | {r['idle_async']['standby']:.1f} |",
        ]
    lag = r["lag"]
    lines += [
        "",
        f"## Lag (steady writer: {m['args']['rate']:g} batches/s of 10 records for {m['args']['lag_seconds']:g} s, sampled every 100 ms, pinned)",
        "",
        f"{lag['writes']} writes at {lag['achieved_rate']:.1f}/s ({lag['late_writes']} started late), {lag['samples']} samples.",
        "",
        "| measure | p50 | p99 | max |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("lag_s", "standby lag_s"),
        ("lag_entries", "standby lag_entries"),
        ("last_minus_applied", "primary last_index - standby applied"),
    ):
        v = lag[key]
        lines.append(f"| {label} | {v['p50']:.3f} | {v['p99']:.3f} | {v['max']:.3f} |")
    for label in ("async", "sync"):
        key = f"failover_{label}"
        if r.get(f"{key}_error"):
            lines += ["", f"Failover run ({label}) stopped early: {r[f'{key}_error']}"]
        fo = r.get(key)
        if not fo:
            continue
        rto = [x["rto_s"] for x in fo]
        lines += [
            "",
            f"## Failover, {label} (primary pod SIGKILLed, gateway and Chroma; chart lease timings 15 s / 10 s / 2 s)",
            "",
            "| round | RTO s | acked records lost | records acked by the killed primary | rejoined by rebuild | in sync again, s after the kill |",
            "|---|---|---|---|---|---|",
        ]
        for i, x in enumerate(fo, 1):
            lines.append(
                f"| {i} | {x['rto_s']:.1f} | {x['acked_lost']} | {x['acked_by_old']} | {x['rebuilt']} | {x['rejoin_s']:.1f} |"
            )
        lines.append(
            f"| **{len(fo)} rounds** | p50 {pct(rto, 0.5):.1f}, p99 {pct(rto, 0.99):.1f}, max {max(rto):.1f} | "
            f"{sum(x['acked_lost'] for x in fo)} | {sum(x['acked_by_old'] for x in fo)} | | |"
        )
    for key in ("profile_off", "profile_async"):
        prof = r.get(key)
        if not prof or "error" in prof:
            continue
        lines += [
            "",
            f"## Profile of the primary gateway, {key.split('_')[1]} (py-spy, {prof['samples']} CPU samples at 200 Hz, "
            f"{prof['requests']} writes, {prof['samples_per_request']:.2f} samples per write)",
            "",
            "| function (inclusive) | share of samples |",
            "|---|---|",
        ]
        skip = ("asyncio/", "<module>", "main (pod.py)", "run (", "serve (", "Server.")
        shown = [f for f in prof["inclusive"] if not any(x in f[0] for x in skip)][:20]
        lines += [f"| {f} | {v:.1%} |" for f, v in shown]
        lines += ["", "| function (self) | share of samples |", "|---|---|"]
        lines += [f"| {f} | {v:.1%} |" for f, v in prof["self"][:15]]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot(r: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    modes = ["off", "async", "sync"]
    ax1.bar(modes, [r[m]["p50_ms"] for m in modes], label="p50")
    ax1.bar(
        modes,
        [r[m]["p99_ms"] - r[m]["p50_ms"] for m in modes],
        bottom=[r[m]["p50_ms"] for m in modes],
        label="p99",
    )
    ax1.set_ylabel("write latency, ms (10 records)")
    ax1.legend()
    series = r["lag"]["series"]
    ax2.plot([s[0] for s in series], [s[1] for s in series])
    ax2.set_xlabel("s")
    ax2.set_ylabel("standby lag_s")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)


if __name__ == "__main__":
    main()
