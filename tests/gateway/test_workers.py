"""Several gateway workers on one port: one write hold, summed metrics, restarts, safe caches.

Each test runs the real ``chromactl gateway`` (a supervisor and its worker processes) in
front of a real Chroma, and reads Chroma directly, behind the gateway, to see what it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.repository.repository import Repository
from chromactl.pod.cpus import default_workers
from tests.gateway.helpers import Chroma, free_port, run_chroma, wait_until

pytestmark = pytest.mark.slow

ADMIN = "ck_workers-admin-token"
TEAM_A = "ck_workers-team-a-token"
TEAM_B = "ck_workers-team-b-token"


@dataclass
class Pod:
    url: str
    metrics_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[int]:
        """Pids of the live worker processes (children of the supervisor)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(p) for p in children]

    def metrics(self) -> dict[str, float]:
        text = httpx.get(self.metrics_url, timeout=10).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))
                out[key] = out.get(key, 0.0) + s.value
        return out

    def total(self, name: str, **labels: str) -> float:
        found = 0.0
        for key, value in self.metrics().items():
            metric, *pairs = key.split(",")
            got = dict(p.split("=", 1) for p in pairs)
            if metric == name and all(got.get(k) == v for k, v in labels.items()):
                found += value
        return found


def requests_served(pid: int, scratch: Path) -> float:
    """Requests one worker has answered, from its own metrics file (multiprocess mode)."""
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
    )
    mine = scratch / str(pid)
    mine.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(environ["PROMETHEUS_MULTIPROC_DIR"]) / f"counter_{pid}.db", mine)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(mine))
    return sum(
        s.value
        for family in registry.collect()
        if family.name == "chromactl_gateway_requests"
        for s in family.samples
        if s.name.endswith("_total")
    )


@contextlib.contextmanager
def workers_pod(
    tmp_path: Path, chroma: Chroma, workers: int, backup: dict[str, object] | None = None, **gateway: object
) -> Iterator[Pod]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name, token in (("admin", ADMIN), ("team-a", TEAM_A), ("team-b", TEAM_B)):
        (secrets / name).write_text(token)
    port, metrics_port = free_port(), free_port()
    config = {
        "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data"), "version": "1.5.9"},
        "log": {"format": "console", "level": "INFO"},
        "gateway": {
            "listen_address": "127.0.0.1",
            "port": port,
            "metrics_port": metrics_port,
            "metrics_address": "127.0.0.1",
            "workers": workers,
            "write_wait_s": 30,
            "auth": {
                "token": {
                    "credentials": [
                        {"name": "admin", "role": "admin", "token_file": str(secrets / "admin")},
                        {
                            "name": "team-a",
                            "role": "writer",
                            "tenants": ["team-a"],
                            "token_file": str(secrets / "team-a"),
                        },
                        {
                            "name": "team-b",
                            "role": "writer",
                            "tenants": ["team-b"],
                            "token_file": str(secrets / "team-b"),
                        },
                    ]
                }
            },
            **gateway,
        },
    }
    if backup is not None:
        config["backup"] = backup
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / f"gateway-{workers}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chromactl", "gateway", "--config", str(tmp_path / "gateway.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    pod = Pod(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", proc, log)
    try:
        wait_until(
            lambda: len(pod.workers()) == workers and _joined(log) >= workers, 60, "the workers to join"
        )
        wait_until(lambda: _answers(pod.url), 30, "the gateway to answer")
        yield pod
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=40)


def _joined(log: Path) -> int:
    return log.read_text(errors="replace").count(" joined (")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v2/heartbeat", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
DB = "/api/v2/tenants/default_tenant/databases/default_database"


def create_collection(url: str, name: str, headers: dict[str, str] = ADMIN_HEADERS, db: str = DB) -> str:
    resp = httpx.post(f"{url}{db}/collections", json={"name": name, "get_or_create": True}, headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def chroma_count(chroma: Chroma, collection_id: str) -> int:
    """Read behind the gateway: what Chroma itself holds now."""
    return int(httpx.get(f"{chroma.url}{DB}/collections/{collection_id}/count", timeout=10).json())


@dataclass
class Writers:
    """Threads adding one record per request, each on fresh connections (spread over workers)."""

    url: str
    collection_id: str
    threads: int = 8
    acked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            record = f"w{n}-{i}"
            i += 1
            # A new connection for each write: the kernel hands them to every worker.
            resp = httpx.post(
                f"{self.url}{DB}/collections/{self.collection_id}/add",
                json={"ids": [record], "embeddings": [[float(n), float(i)]]},
                headers={**ADMIN_HEADERS, "Connection": "close"},
                timeout=60,
            )
            with self._lock:
                (self.acked if resp.status_code == 201 else self.refused).append(record)

    @contextlib.contextmanager
    def running(self) -> Iterator[Writers]:
        threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in threads:
                t.join(90)


@pytest.mark.parametrize(("workers", "quiet_s"), [(2, 0.0), (4, 0.0), (2, 0.5)])
def test_one_hold_stops_writes_in_every_worker_and_loses_none(
    tmp_path: Path, workers: int, quiet_s: float
) -> None:
    """With ``quiet_s`` each worker closes at its own quiet moment: still one hold for all."""
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, workers) as pod:
        cid = create_collection(pod.url, "held")
        with (
            httpx.Client(base_url=pod.url, headers=ADMIN_HEADERS, timeout=60) as admin,
            Writers(pod.url, cid).running() as writers,
        ):
            wait_until(lambda: len(writers.acked) >= 40, 60, "writes to flow")
            for _ in range(3):
                granted = admin.post("/chromactl/v1/hold", json={"timeout_s": 20, "quiet_s": quiet_s})
                assert granted.status_code == 200, granted.text
                at_grant = chroma_count(chroma, cid)
                acked_at_grant = len(writers.acked)
                time.sleep(1.0)  # writers keep sending to every worker meanwhile
                assert chroma_count(chroma, cid) == at_grant, "a write was applied inside the hold"
                assert len(writers.acked) == acked_at_grant, "a write was acknowledged inside the hold"
                listing = admin.get("/chromactl/v1/hold").json()
                assert [h["hold_id"] for h in listing["holds"]] == [granted.json()["hold_id"]]
                assert listing["writes_in_flight"] == 0
                released = admin.delete(f"/chromactl/v1/hold/{granted.json()['hold_id']}")
                assert released.json() == {"released": True}
                wait_until(lambda n=acked_at_grant: len(writers.acked) > n + 10, 60, "writes to resume")
        assert not writers.refused
        assert chroma_count(chroma, cid) == len(writers.acked)  # none lost, none doubled
        served = {pid: requests_served(pid, tmp_path / "scratch") for pid in pod.workers()}
        assert len(served) == workers and all(n >= 5 for n in served.values()), served


def test_metrics_are_the_totals_over_all_workers(tmp_path: Path) -> None:
    """Counters summed over the workers; each worker writes its own audit file."""
    audit = tmp_path / "audit" / "audit.log"
    with (
        run_chroma(tmp_path / "chroma") as chroma,
        workers_pod(tmp_path, chroma, 3, audit={"file": str(audit)}) as pod,
    ):
        probes = pod.total("chromactl_gateway_requests_total", operation="heartbeat")  # readiness
        for _ in range(60):
            assert (
                httpx.get(f"{pod.url}/api/v2/heartbeat", headers={"Connection": "close"}).status_code == 200
            )
        for _ in range(7):
            denied = httpx.get(f"{pod.url}{DB}/collections", headers={"Authorization": "Bearer wrong"})
            assert denied.status_code == 401
        assert pod.total("chromactl_gateway_requests_total", operation="heartbeat") == probes + 60
        assert pod.total("chromactl_gateway_auth_failures_total") == 7
        assert pod.total("chromactl_gateway_workers") == 3
        assert pod.total("chromactl_gateway_requests_in_flight") == 0
        for n in range(12):  # new connections: spread over the workers
            create_collection(pod.url, f"audited-{n}")
        assert pod.total("chromactl_gateway_audit_events_total", outcome="allowed") == 12
    files = sorted(audit.parent.glob("audit.log.*"))
    assert {f.name for f in files} <= {"audit.log.0", "audit.log.1", "audit.log.2"} and len(files) >= 2
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(line["collection"] for line in lines) == sorted(f"audited-{n}" for n in range(12))


def test_a_scrape_that_meets_a_starting_workers_empty_metrics_file_reads_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker creates its metrics file empty, then sizes it: a scrape in between reads it again
    instead of failing whole (the metrics port would answer with an error page)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from chromactl.pod import supervisor

    metrics, ready = tmp_path / "metrics", tmp_path / "ready"
    metrics.mkdir()
    ready.mkdir()
    starting = metrics / "counter_4242.db"
    starting.touch()  # created, not yet sized: no header
    sized = MmapedDict(str(ready / starting.name))  # type: ignore[no-untyped-call]
    sized.write_value(mmap_key("starting_requests", "starting_requests_total", [], [], "Requests."), 3.0, 0.0)  # type: ignore[no-untyped-call]
    sized.close()  # type: ignore[no-untyped-call]
    waits: list[float] = []

    def worker_sizes_its_file(seconds: float) -> None:
        waits.append(seconds)
        os.replace(ready / starting.name, starting)

    monkeypatch.setattr(supervisor.time, "sleep", worker_sizes_its_file)
    families = {f.name: f for f in supervisor.WorkersCollector(None, path=str(metrics)).collect()}
    assert len(waits) == 1
    assert [s.value for s in families["starting_requests"].samples] == [3.0]

    starting.write_bytes(b"")  # a file that stays empty fails the scrape: no silent gap
    monkeypatch.setattr(supervisor.time, "sleep", waits.append)
    with pytest.raises(struct.error):
        supervisor.WorkersCollector(None, path=str(metrics)).collect()
    assert len(waits) == 1 + supervisor.WorkersCollector.ATTEMPTS - 1


def test_a_crashed_worker_is_restarted_counted_and_starts_inside_a_running_hold(tmp_path: Path) -> None:
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, 2) as pod:
        cid = create_collection(pod.url, "restarts")
        with httpx.Client(base_url=pod.url, headers=ADMIN_HEADERS, timeout=60) as admin:
            hold = admin.post("/chromactl/v1/hold", json={"timeout_s": 15}).json()
            victim = pod.workers()[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: victim not in pod.workers() and len(pod.workers()) == 2, 30, "a new worker")
            wait_until(lambda: _joined(pod.log) >= 3, 30, "the new worker to join")
            assert pod.total("chromactl_gateway_worker_restarts_total") == 1
            with Writers(pod.url, cid, threads=4).running() as writers:
                time.sleep(1.5)  # some of these land on the new worker
                assert chroma_count(chroma, cid) == 0, "the new worker let a write through the hold"
                assert not writers.acked
                admin.delete(f"/chromactl/v1/hold/{hold['hold_id']}")
                wait_until(lambda: len(writers.acked) >= 8, 30, "writes after the release")
        assert chroma_count(chroma, cid) == len(writers.acked)


def test_a_crashed_worker_ends_the_backup_journal_epoch_and_a_new_base_follows(tmp_path: Path) -> None:
    """Its last writes may have reached Chroma without reaching the journal: the journal must
    not be replayed past that point (continuous backup, docs/backup.md)."""
    backups = tmp_path / "backups"
    backup = {"target": str(backups), "continuous": {"enabled": True, "ship_interval_s": 0.2}}
    repo = Repository(str(backups))
    bases = lambda: [s for s in repo.complete() if s.manifest and s.manifest.cut_at]  # noqa: E731
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, 2, backup=backup) as pod:
        wait_until(lambda: len(bases()) == 1, 60, "the first base snapshot")
        cid = create_collection(pod.url, "journaled")
        with Writers(pod.url, cid, threads=2).running() as writers:
            wait_until(lambda: len(writers.acked) >= 10, 30, "writes")
            os.kill(pod.workers()[0], signal.SIGKILL)
            wait_until(lambda: len(Timeline(repo).epochs()) == 2, 30, "a new journal epoch")
            wait_until(lambda: len(bases()) == 2, 60, "the new epoch's base snapshot")
    first, second = Timeline(repo).epochs()
    assert first.ended is not None and "gateway worker" in first.reason
    assert second.started == first.ended
    cut = bases()[-1].manifest.cut_at  # type: ignore[union-attr]
    assert cut is not None and cut >= second.started


def test_connections_queued_on_a_dead_worker_are_served_by_its_replacement(tmp_path: Path) -> None:
    """The supervisor keeps every worker's listening socket: what the kernel queued on the
    socket of a worker that dies waits for the next worker instead of being reset."""
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, 2) as pod:
        victim = pod.workers()[0]
        os.kill(victim, signal.SIGSTOP)  # it takes no connection from its queue now
        answers: list[int | str] = []

        def call() -> None:
            try:
                resp = httpx.get(f"{pod.url}/api/v2/heartbeat", headers={"Connection": "close"}, timeout=60)
                answers.append(resp.status_code)
            except httpx.HTTPError as exc:
                answers.append(repr(exc))

        callers = [threading.Thread(target=call) for _ in range(16)]
        for t in callers:
            t.start()
        # The live worker answers its share; the rest wait in the stopped worker's queue.
        wait_until(lambda: 0 < len(answers) < 16, 30, "the live worker's share")
        time.sleep(0.5)
        queued = 16 - len(answers)
        assert queued > 0, "no connection was queued on the stopped worker"
        os.kill(victim, signal.SIGKILL)
        for t in callers:
            t.join(90)
        assert answers == [200] * 16, answers
        assert pod.total("chromactl_gateway_worker_restarts_total") == 1


def test_a_worker_that_dies_while_draining_fails_the_hold_and_writes_go_on(tmp_path: Path) -> None:
    """A write forwarded by a dead worker may still run in Chroma: its hold cannot be granted."""
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, 2) as pod:
        cid = create_collection(pod.url, "dying")
        # A worker that never drains: stopped (SIGSTOP) with a write in it, then killed.
        victim = pod.workers()[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            resp = None
            for _ in range(8):
                # A new connection each try: one that the stopped worker's socket takes
                # is never answered; the live worker answers within drain + grace.
                started = time.monotonic()
                with contextlib.suppress(httpx.ReadTimeout):
                    resp = httpx.post(
                        f"{pod.url}/chromactl/v1/hold",
                        json={"timeout_s": 5, "drain_timeout_s": 1},
                        headers=ADMIN_HEADERS,
                        timeout=httpx.Timeout(10.0, connect=2.0),
                    )
                    break
            assert resp is not None
            assert resp.status_code == 503 and "did not answer" in resp.json()["message"]
            assert time.monotonic() - started < 15
            # The failed hold was given back at once (asked while the victim is still
            # stopped: hold requests queued on its socket have not run yet).
            listing = None
            for _ in range(8):
                with contextlib.suppress(httpx.ReadTimeout):
                    listing = httpx.get(
                        f"{pod.url}/chromactl/v1/hold",
                        headers=ADMIN_HEADERS,
                        timeout=httpx.Timeout(3.0, connect=2.0),
                    ).json()
                    break
            assert listing is not None and listing["holds"] == []
        finally:
            # Its replacement serves what was queued on its socket, the abandoned hold
            # requests too: those holds end by themselves after their 5 s.
            os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(pod.workers()) == 2 and _joined(pod.log) >= 3, 30, "the replacement")
        with Writers(pod.url, cid, threads=2).running() as writers:
            wait_until(lambda: len(writers.acked) >= 6, 30, "writes to go on")
        assert chroma_count(chroma, cid) == len(writers.acked)


def test_a_delete_in_one_worker_leaves_no_way_into_another_tenant(tmp_path: Path) -> None:
    """The collection-id cache of each worker holds facts that never change (an id is bound to
    one tenant and database for its life): a stale entry after a delete elsewhere lets nobody
    read another tenant's data."""
    with run_chroma(tmp_path / "chroma") as chroma, workers_pod(tmp_path, chroma, 3) as pod:
        team_a = {"Authorization": f"Bearer {TEAM_A}"}
        team_b = {"Authorization": f"Bearer {TEAM_B}"}
        for tenant in ("team-a", "team-b"):
            assert httpx.post(
                f"{pod.url}/api/v2/tenants", json={"name": tenant}, headers=ADMIN_HEADERS
            ).is_success
            db = {"name": "main"}
            assert httpx.post(
                f"{pod.url}/api/v2/tenants/{tenant}/databases", json=db, headers=ADMIN_HEADERS
            ).is_success
        db_a, db_b = "/api/v2/tenants/team-a/databases/main", "/api/v2/tenants/team-b/databases/main"
        cid = create_collection(pod.url, "secret", team_a, db_a)
        add = {"ids": ["s1"], "embeddings": [[1.0, 2.0]], "documents": ["team a only"]}
        assert (
            httpx.post(f"{pod.url}{db_a}/collections/{cid}/add", json=add, headers=team_a).status_code == 201
        )
        # Every worker caches the id (fresh connections land on all of them).
        for _ in range(30):
            got = httpx.post(
                f"{pod.url}{db_a}/collections/{cid}/get", json={}, headers={**team_a, "Connection": "close"}
            )
            assert got.json()["documents"] == ["team a only"]
        assert httpx.delete(f"{pod.url}{db_a}/collections/secret", headers=team_a).status_code == 200
        for _ in range(30):
            fresh = {"Connection": "close"}
            as_a = httpx.post(f"{pod.url}{db_a}/collections/{cid}/get", json={}, headers={**team_a, **fresh})
            as_b = httpx.post(f"{pod.url}{db_b}/collections/{cid}/get", json={}, headers={**team_b, **fresh})
            assert as_a.status_code >= 400 and "team a only" not in as_a.text
            assert as_b.status_code in (403, 404) and "team a only" not in as_b.text


def test_the_default_follows_the_cgroup_cpu_limit_then_the_request(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert default_workers(tmp_path, {}) == min(3, os.cpu_count() or 1)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert default_workers(tmp_path, {}) == 1
    assert default_workers(tmp_path, {"CHROMACTL_CPU_REQUEST": "1500"}) == min(2, os.cpu_count() or 1)
    assert default_workers(tmp_path, {"CHROMACTL_CPU_REQUEST": "100"}) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert default_workers(v1, {}) == min(2, os.cpu_count() or 1)
