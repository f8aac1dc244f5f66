"""highAvailability on the pod runner: two Chroma pods, a Lease on the fake API server over TLS,
Services that follow the pods' role labels, and a steady writer through the Service while
faults happen: the primary's containers SIGKILLed, a switchover, a standby killed, the
primary cut off the network while its processes run, the API server away.

Every acknowledged id is checked against the final primary: synchronous mode loses none; in
asynchronous mode only writes acknowledged within the lag before the fault may be missing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.chart.fake_kube import FakeCluster
from tests.e2e.conftest import NAMESPACE, READY_TIMEOUT_S, SERVICE, render
from tests.podrunner.runner import PodRunner

PODS = ["chroma-chromadb-0", "chroma-chromadb-1"]
DB = "/api/v2/tenants/default_tenant/databases/default_database"
CONFIG = "/etc/chromactl/config/chromactl.yaml"
ROLE = "chromactl.io/role"
#: Short lease timings (the chart's checks hold) so that a failover takes seconds.
VALUES: dict[str, Any] = {
    "highAvailability": {
        "enabled": True,
        "replicas": 2,
        "synchronous": True,
        "synchronousTimeoutSeconds": 5,
        "lease": {"durationSeconds": 6, "renewDeadlineSeconds": 3.5, "retryPeriodSeconds": 1},
    },
}


def admin_token(rendered: dict[str, str]) -> str:
    for name, text in rendered.items():
        if not name.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "Secret" and doc["metadata"]["name"].endswith("chromadb-auth"):
                data = doc.get("data") or {}
                if "token" in data:
                    return base64.b64decode(data["token"]).decode()
                return str(doc["stringData"]["token"])
    raise AssertionError("no auth Secret rendered")


def roles(runner: PodRunner) -> dict[str, str | None]:
    assert runner.kube is not None
    out = {}
    for pod in PODS:
        obj = runner.kube.cluster.find("Pod", pod, NAMESPACE)
        out[pod] = ((obj or {}).get("metadata", {}).get("labels") or {}).get(ROLE)
    return out


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def primary(runner: PodRunner) -> str | None:
    leaders = [p for p, r in roles(runner).items() if r == "primary"]
    return leaders[0] if len(leaders) == 1 else None


class Writer:
    """Upserts one id at a time through the Service URL, retrying as a client would."""

    def __init__(self, url: str, token: str, cid: str, diagnose: Callable[[], str] = str) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.cid = cid
        self.acked: list[str] = []
        #: When each id was acknowledged (monotonic).
        self.acked_at: dict[str, float] = {}
        self.refused = 0
        #: The last refusal (status and body, or the exception), for a failure's message.
        self.last_refusal = ""
        #: What the cluster looks like, for a stall's message.
        self.diagnose = diagnose
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            rid = f"w{n}"
            try:
                answer = self.client.post(
                    f"{DB}/collections/{self.cid}/upsert",
                    json={"ids": [rid], "embeddings": [[float(n), 1.0]]},
                )
                ok = answer.status_code == 200
                if not ok:
                    self.last_refusal = f"{answer.status_code} {answer.text[:300]}"
            except httpx.HTTPError as exc:
                ok = False
                self.last_refusal = repr(exc)
            if ok:
                self.acked.append(rid)
                self.acked_at[rid] = time.monotonic()
                n += 1
            else:
                self.refused += 1
                time.sleep(0.2)
            time.sleep(0.02)

    def wait_more(self, count: int, timeout: float, what: str) -> None:
        target = len(self.acked) + count
        refused = self.refused
        try:
            wait_for(lambda: len(self.acked) >= target, timeout, what)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: {self.refused - refused} refused meanwhile, the last: {self.last_refusal}\n"
                f"{self.diagnose()}"
            ) from None

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def finish(self) -> None:
        """Stop writing (what was acknowledged is final)."""
        self.stop.set()
        self.thread.join(20)

    def __exit__(self, *exc: object) -> None:
        self.finish()


def cluster_state(runner: PodRunner) -> str:
    lines = [f"roles {roles(runner)}; the balancer last closed: {runner.balancer_failures()}"]
    return "\n".join(lines + [runner.describe(pod) for pod in PODS])


def ids_on(runner: PodRunner, pod: str, token: str, cid: str) -> set[str]:
    url = f"http://{runner.pod(pod).ip}:8000"
    found = httpx.post(
        f"{url}{DB}/collections/{cid}/get",
        json={"include": []},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    return set(found["ids"])


def ha_status(runner: PodRunner, pod: str) -> dict[str, Any]:
    done = runner.exec(
        pod,
        "gateway",
        ["chromactl", "ha", "status", "--json", "--config", CONFIG],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@contextlib.contextmanager
def ha_release(tmp_path: Path, synchronous: bool) -> Iterator[tuple[PodRunner, str, str, str, Writer]]:
    """The release installed and a writer running through the Service: (runner, token, the first
    primary, the standby, the writer)."""
    values = json.loads(json.dumps(VALUES))
    values["highAvailability"]["synchronous"] = synchronous
    rendered = render(values, gateway=True)
    token = admin_token(rendered)
    with PodRunner(tmp_path / "cluster", namespace=NAMESPACE, kube=FakeCluster()) as runner:
        runner.apply(rendered)
        runner.prepare_images()
        runner.start_workloads()
        for pod in PODS:
            runner.wait_ready(pod, READY_TIMEOUT_S)
        first = wait_for(lambda: primary(runner), 60, "a primary")
        other = next(p for p in PODS if p != first)
        wait_for(lambda: roles(runner)[other] == "standby", 60, "a standby in sync")
        url = runner.balanced_service_url(SERVICE, 8000)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        created = client.post(f"{DB}/collections", json={"name": "ha-writes"})
        assert created.status_code == 200, created.text
        with Writer(url, token, created.json()["id"], lambda: cluster_state(runner)) as writer:
            writer.wait_more(20, 60, "writes through the Service")
            yield runner, token, first, other, writer


def assert_every_write_on(runner: PodRunner, pods: list[str], token: str, writer: Writer) -> None:
    for pod in pods:
        wait_for(
            lambda pod=pod: set(writer.acked) <= ids_on(runner, pod, token, writer.cid),
            60,
            f"every acknowledged write on {pod}",
        )


def test_synchronous_failover_switchover_and_a_killed_standby_lose_nothing(tmp_path: Path) -> None:
    with ha_release(tmp_path, synchronous=True) as (runner, token, first, other, writer):
        status = ha_status(runner, other)
        assert status["primary"]["pod"] == first
        assert [s["pod"] for s in status["primary"]["standbys"]] == [other]

        # 1. the primary's containers are SIGKILLed: the standby is promoted, the Service
        # follows; the old primary is rebuilt (it led and did not hand over) and rejoins;
        # synchronous writes wait for it meanwhile (it is the only standby)
        killed_at = time.monotonic()
        runner.kill_containers(first)
        wait_for(lambda: primary(runner) == other, 60, "the standby to be promoted")
        promoted_s = time.monotonic() - killed_at
        assert ha_status(runner, other)["asked"]["failovers"] == 1
        wait_for(lambda: roles(runner).get(first) == "standby", 180, "the old primary to rejoin")
        writer.wait_more(5, 60, "writes after the failover")

        # 2. a switchover back, as the preStop hook of a stopped primary does it
        done = runner.exec(
            other,
            "gateway",
            ["chromactl", "ha", "switchover", "--if-primary", "--config", CONFIG],
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"{first} is the primary (was {other})" in done.stdout
        held_s = float(done.stdout.split("held ")[1].split(" s")[0])
        assert held_s <= 5
        wait_for(lambda: primary(runner) == first, 30, "the Service to follow the switchover")
        writer.wait_more(5, 60, "writes after the switchover")

        # 3. the standby's containers are killed: it restarts in place and follows again
        runner.kill_containers(other)
        wait_for(lambda: roles(runner).get(other) == "standby", 120, "the standby to come back")
        writer.wait_more(5, 60, "writes with the standby back")
        writer.finish()

        assert primary(runner) == first
        on_primary = ids_on(runner, first, token, writer.cid)
        lost = [i for i in writer.acked if i not in on_primary]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
        assert_every_write_on(runner, [other], token, writer)
        status = ha_status(runner, other)
        # the cluster at a glance from the standby
        assert status["primary"]["pod"] == first and status["asked"]["role"] == "standby"
        # the switchover was not counted as a failover (the ChromaFailover alert stays quiet)
        assert status["primary"]["failovers"] == 0
        print(f"promoted {promoted_s:.1f}s after SIGKILL; switchover held writes {held_s:.3f}s")


def test_a_cut_off_primary_the_api_server_away_and_a_killed_switchover(tmp_path: Path) -> None:
    with ha_release(tmp_path, synchronous=False) as (runner, token, first, other, writer):
        # 1. the primary is cut off the network while its processes run
        cut_at = time.monotonic()
        runner.partition(first)
        wait_for(lambda: roles(runner).get(other) == "primary", 60, "the standby to be promoted")
        writer.wait_more(5, 60, "writes after the failover")
        runner.heal(first)
        wait_for(lambda: roles(runner).get(first) == "standby", 180, "the cut-off pod to rejoin")

        # 2. the API server away longer than the renew deadline: the primary stops writes
        # (no pod may lead without renewing); they resume once it is back
        assert runner.kube is not None
        runner.kube.cluster.down = True
        time.sleep(VALUES["highAvailability"]["lease"]["renewDeadlineSeconds"] + 1.5)
        before = len(writer.acked)
        time.sleep(2)
        assert len(writer.acked) == before, "writes were acknowledged with no primary able to renew"
        runner.kube.cluster.down = False
        writer.wait_more(5, 60, "writes once the API server is back")

        # 3. the primary is killed during a switchover: one pod ends up the primary
        leader = wait_for(lambda: primary(runner), 60, "one primary")
        standby = next(p for p in PODS if p != leader)
        wait_for(lambda: roles(runner).get(standby) == "standby", 180, "a standby in sync")
        switching = threading.Thread(
            target=runner.exec,
            args=(leader, "gateway", ["chromactl", "ha", "switchover", "--config", CONFIG]),
            kwargs={"timeout": 60},
            daemon=True,
        )
        switching.start()
        time.sleep(0.05)
        runner.kill_containers(leader)
        switching.join(60)
        wait_for(lambda: primary(runner) is not None, 60, "a primary after the killed switchover")
        wait_for(
            lambda: all(r in ("primary", "standby") for r in roles(runner).values()), 180, "both pods back"
        )
        writer.wait_more(5, 60, "writes after the killed switchover")
        writer.finish()

        final = primary(runner)
        assert final is not None
        on_primary = ids_on(runner, final, token, writer.cid)
        lost = [i for i in writer.acked if i not in on_primary]
        # asynchronous: only writes acknowledged shortly before the cut may be missing
        late = [i for i in lost if writer.acked_at[i] < cut_at - 2.0]
        assert not late, f"writes acknowledged well before the cut were lost: {late[:10]}"
        print(f"asynchronous: {len(lost)} acknowledged writes lost in the partition")
