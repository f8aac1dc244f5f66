"""highAvailability on the pod runner: two Chroma pods, a Lease on the fake API server, Services
that follow the pods' role labels, and a steady writer through the Service while the primary's
containers are killed.

Synchronous mode, so the assertion is the strong one: no acknowledged write is lost, and
every acknowledged id is on the final primary and on the standby (no write was taken by two
primaries: the one that lost the lease could not acknowledge, its standby never confirmed).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import httpx
import yaml

from tests.chart.fake_kube import FakeCluster
from tests.e2e.conftest import NAMESPACE, READY_TIMEOUT_S, SERVICE, render
from tests.podrunner.runner import PodRunner

PODS = ["chroma-chromadb-0", "chroma-chromadb-1"]
DB = "/api/v2/tenants/default_tenant/databases/default_database"
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

    def __init__(self, url: str, token: str, cid: str) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.cid = cid
        self.acked: list[str] = []
        self.refused = 0
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
            except httpx.HTTPError:
                ok = False
            if ok:
                self.acked.append(rid)
                n += 1
            else:
                self.refused += 1
                time.sleep(0.2)
            time.sleep(0.02)

    def wait_more(self, count: int, timeout: float, what: str) -> None:
        target = len(self.acked) + count
        wait_for(lambda: len(self.acked) >= target, timeout, what)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)


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
        ["chromactl", "ha", "status", "--json", "--config", "/etc/chromactl/config/chromactl.yaml"],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_failover_and_rejoin_under_a_writer(tmp_path: Any) -> None:
    rendered = render(VALUES, gateway=True)
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
        status = ha_status(runner, other)
        assert status["primary"]["pod"] == first
        assert [s["pod"] for s in status["primary"]["standbys"]] == [other]

        url = runner.balanced_service_url(SERVICE, 8000)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        created = client.post(f"{DB}/collections", json={"name": "ha-writes"})
        assert created.status_code == 200, created.text
        cid = created.json()["id"]

        with Writer(url, token, cid) as writer:
            writer.wait_more(20, 60, "writes through the Service")
            # 1. the primary's containers are SIGKILLed: the standby takes over
            killed_at = time.monotonic()
            runner.kill_containers(first)
            wait_for(lambda: primary(runner) == other, 60, "the standby to be promoted")
            promoted = time.monotonic() - killed_at
            # the old primary comes back as a standby (rebuilt: it led and did not hand over);
            # synchronous writes wait for it: it is the only standby
            wait_for(lambda: roles(runner).get(first) == "standby", 180, "the old primary to rejoin")
            writer.wait_more(5, 60, "writes after the failover")
        final = primary(runner)
        assert final == other
        on_primary = ids_on(runner, other, token, cid)
        lost = [i for i in writer.acked if i not in on_primary]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
        wait_for(
            lambda: set(writer.acked) <= ids_on(runner, first, token, cid),
            60,
            "the standby to hold every write",
        )
        status = ha_status(runner, other)
        assert status["asked"]["role"] == "primary" and status["primary"]["failovers"] >= 1
        print(
            f"promoted {promoted:.1f}s after SIGKILL; acked {len(writer.acked)}, "
            f"refused tries {writer.refused}"
        )
