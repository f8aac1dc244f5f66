"""The gateway tier on the pod runner (docs/scale-out.md): two gateway pods of an
``architecture: gateway`` release behind its Service, in front of one Chroma pod of another
release. Clients work unchanged, both pods enforce the same scopes from the same Secret and
each exports its own metrics, a collection deleted through one pod is gone for the other,
and killing or draining a gateway pod while clients write loses no acknowledged write."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.chart.helm import chart
from tests.e2e.conftest import NAMESPACE, READY_TIMEOUT_S, RELEASE, SERVICE, probe, run_client
from tests.gateway.helpers import wait_until
from tests.podrunner.runner import PodRunner

BACKEND = "backend"
BACKEND_POD = "backend-chromadb-0"
GATEWAY_PODS = ["chroma-chromadb-0", "chroma-chromadb-1"]
AUTH_SECRET = "chromadb-auth"
TEAM_TOKEN = "team-" + "t" * 32
GATEWAY_LABELS = {
    "app.kubernetes.io/name": "chromadb",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "gateway",
}
API = "/api/v2/tenants/{tenant}/databases/default_database"


def install_tier(cluster: PodRunner) -> str:
    """Chroma (release ``backend``, served directly) and the gateway tier (release ``chroma``,
    2 pods); the admin token."""
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "team-token", "namespace": NAMESPACE},
                "data": {"token": base64.b64encode(TEAM_TOKEN.encode()).decode()},
            }
        ]
    )
    # docs/scale-out.md: Chroma has no auth, so only the gateway pods may reach it.
    only_gateways = [{"podSelector": {"matchLabels": GATEWAY_LABELS}}]
    backend = {"gateway": {"enabled": False}, "networkPolicy": {"ingressFrom": only_gateways}}
    cluster.apply(chart().render(backend, name=BACKEND, namespace=NAMESPACE))
    values = {
        "architecture": "gateway",
        "scaleOut": {
            "chromaUrl": f"http://{BACKEND}-chromadb:8000",
            "replicas": 2,
            "autoscaling": {"enabled": False},
        },
        "terminationGracePeriodSeconds": 5,
        # the gateway probes Chroma every second (a pod may start before Chroma answers)
        "metrics": {"internalsIntervalSeconds": 1},
        "chromadb": {
            "auth": {
                "credentials": [
                    {"name": "team", "role": "writer", "tenants": ["team-a"], "secretName": "team-token"}
                ]
            }
        },
    }
    cluster.apply(chart().render(values, name=RELEASE, namespace=NAMESPACE))
    cluster.prepare_images()
    cluster.start_workloads()
    for name in [BACKEND_POD, *GATEWAY_PODS]:
        cluster.wait_ready(name, READY_TIMEOUT_S)
    secret = cluster.store.data("Secret", AUTH_SECRET)
    assert secret is not None
    return secret["token"].decode()


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def pod_url(cluster: PodRunner, name: str, port: int = 8000) -> str:
    return f"http://{cluster.pod(name).ip}:{port}"


def counter(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def tier(cluster: PodRunner) -> Iterator[tuple[PodRunner, str]]:
    yield cluster, install_tier(cluster)


def test_two_gateway_pods_serve_clients_enforce_scopes_and_export_metrics(
    tier: tuple[PodRunner, str],
) -> None:
    cluster, admin_token = tier
    assert set(cluster.pod_sources()) >= {"Deployment/chroma-chromadb", "StatefulSet/backend-chromadb"}
    assert "StatefulSet/chroma-chromadb" not in cluster.pod_sources()

    # Chroma answers the gateway pods only; a client pod reaches it through the tier.
    backend_ip = cluster.pod(BACKEND_POD).ip
    assert probe(cluster, NAMESPACE, {"app": "e2e-client"}, backend_ip, 8000)["result"] == "timeout"
    # Clients unchanged: Chroma's Python client, in a pod, through the tier's Service.
    assert run_client(cluster, "add", host=SERVICE, token_secret=AUTH_SECRET) == {
        "count": 2,
        "nearest": ["a"],
    }
    # The helm tests of the tier pass against it.
    results = cluster.run_tests(timeout=90)
    for name in ("chroma-chromadb-test-heartbeat", "chroma-chromadb-test-collection"):
        assert results[name].succeeded, f"helm test {name}: {results[name].error}\n{results[name].logs()}"

    with client(pod_url(cluster, GATEWAY_PODS[0]), admin_token) as admin:
        assert admin.post("/api/v2/tenants", json={"name": "team-a"}).status_code == 200
        assert (
            admin.post("/api/v2/tenants/team-a/databases", json={"name": "default_database"}).status_code
            == 200
        )
    for pod in GATEWAY_PODS:  # the same Secret, the same scopes, on each pod
        with (
            client(pod_url(cluster, pod), TEAM_TOKEN) as team,
            client(pod_url(cluster, pod), "wrong-" + "x" * 30) as bad,
        ):
            mine = team.post(API.format(tenant="team-a") + "/collections", json={"name": f"from-{pod}"})
            assert mine.status_code == 200, mine.text
            other = team.get(API.format(tenant="default_tenant") + "/collections")
            assert other.status_code == 403, other.text
            assert bad.get(API.format(tenant="team-a") + "/collections").status_code == 401
    with client(pod_url(cluster, GATEWAY_PODS[1]), TEAM_TOKEN) as team:
        names = {c["name"] for c in team.get(API.format(tenant="team-a") + "/collections").json()}
    assert names == {f"from-{pod}" for pod in GATEWAY_PODS}  # one Chroma behind both

    for pod in GATEWAY_PODS:  # each pod exports its own requests, denials included

        def scrape(pod: str = pod) -> str:
            return httpx.get(pod_url(cluster, pod, 9464) + "/metrics", timeout=10).text

        wait_until(lambda: "chromactl_chroma_up 1.0" in scrape(), 15, f"{pod} to report Chroma up")
        metrics = scrape()  # the remote Chroma, probed
        assert counter(metrics, "chromactl_gateway_requests_total") >= 3, pod
        assert counter(metrics, "chromactl_gateway_authorization_denied_total") >= 1, pod
        assert "chromactl_chroma_volume_free_bytes" not in metrics  # no data directory here


def test_a_collection_deleted_through_one_pod_is_gone_for_the_other(tier: tuple[PodRunner, str]) -> None:
    cluster, admin_token = tier
    base = API.format(tenant="default_tenant") + "/collections"
    with (
        client(pod_url(cluster, GATEWAY_PODS[0]), admin_token) as a,
        client(pod_url(cluster, GATEWAY_PODS[1]), admin_token) as b,
    ):
        cid = a.post(base, json={"name": "shared"}).json()["id"]
        add = {"ids": ["x"], "embeddings": [[1.0, 2.0]]}
        assert a.post(f"{base}/{cid}/add", json=add).status_code == 201  # pod a now knows the id
        assert b.delete(f"{base}/shared").status_code == 200
        gone = a.post(f"{base}/{cid}/add", json=add)
        assert gone.status_code == 404, gone.text  # Chroma answers: no stale grant, no write
        new = b.post(base, json={"name": "shared"}).json()["id"]
        assert new != cid
        assert a.post(f"{base}/{new}/add", json=add).status_code == 201
        assert a.get(f"{base}/{new}/count").json() == 1


class Writer(threading.Thread):
    """Upserts batches of new ids through the Service until stopped; a batch is retried
    until the tier acknowledges it, and remembered once it is."""

    def __init__(self, url: str, token: str, collection: str, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.collection, self.number, self.stop = url, token, collection, number, stop
        self.acknowledged: list[str] = []
        self.errors = 0

    def run(self) -> None:
        batch = 0
        while not self.stop.is_set():
            ids = [f"w{self.number}-{batch}-{i}" for i in range(10)]
            body = {"ids": ids, "embeddings": [[float(batch), float(i)] for i in range(10)]}
            while not self.stop.is_set():
                try:
                    # A new connection for each batch: the Service spreads them over the pods.
                    with client(self.url, self.token) as c:
                        resp = c.post(
                            f"{API.format(tenant='default_tenant')}/collections/{self.collection}/upsert",
                            json=body,
                        )
                    if resp.status_code == 200:
                        self.acknowledged += ids
                        break
                    self.errors += 1
                except httpx.HTTPError:
                    self.errors += 1
                time.sleep(0.05)
            batch += 1


def kill_hard(cluster: PodRunner, pod: str) -> None:
    """SIGKILL the gateway's processes, as a crash or an OOM kill does; the pod restarts it."""
    proc = cluster.pod(pod).container("gateway").proc
    assert proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_killing_or_draining_a_gateway_pod_loses_no_acknowledged_write(tier: tuple[PodRunner, str]) -> None:
    cluster, admin_token = tier
    url = cluster.balanced_service_url(SERVICE, 8000)
    base = API.format(tenant="default_tenant") + "/collections"
    with client(url, admin_token) as admin:
        cid = admin.post(base, json={"name": "writes"}).json()["id"]
    stop = threading.Event()
    writers = [Writer(url, admin_token, cid, n, stop) for n in range(4)]
    for w in writers:
        w.start()

    def acked() -> int:
        return sum(len(w.acknowledged) for w in writers)

    def progress(at_least: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while acked() < at_least:
            assert time.monotonic() < deadline, f"writers stalled at {acked()} acknowledged"
            time.sleep(0.1)

    try:
        progress(200)
        kill_hard(cluster, GATEWAY_PODS[0])  # a crash while clients write
        progress(acked() + 200)
        back_up = time.monotonic() + READY_TIMEOUT_S  # restarted by the pod (a crash is not a failure here)
        while not cluster.pod(GATEWAY_PODS[0]).is_ready():
            assert time.monotonic() < back_up, "the killed gateway did not come back"
            time.sleep(0.2)
        progress(acked() + 200)
        cluster.delete_pod(GATEWAY_PODS[1])  # a drain: SIGTERM, in-flight requests finish
        progress(acked() + 200)
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    assert cluster.pod(GATEWAY_PODS[0]).container("gateway").exit_codes == [-9]  # the kill landed

    acknowledged = {i for w in writers for i in w.acknowledged}
    direct = httpx.Client(base_url=pod_url(cluster, BACKEND_POD), timeout=30)  # Chroma itself
    with direct:
        stored: set[str] = set()
        offset = 0
        while True:
            page = direct.post(
                f"{base}/{cid}/get", json={"include": [], "limit": 1000, "offset": offset}
            ).json()
            stored |= set(page["ids"])
            if len(page["ids"]) < 1000:
                break
            offset += 1000
    assert len(acknowledged) >= 800
    assert acknowledged - stored == set(), f"{len(acknowledged - stored)} acknowledged writes missing"
