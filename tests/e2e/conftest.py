"""End-to-end tests: the chart rendered by Helm, its pods started by the pod runner."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import chart
from tests.podrunner.common import log_tail
from tests.podrunner.images import CLIENT_IMAGE
from tests.podrunner.runner import JobResult, Pod, PodRunner

RELEASE = "chroma"
NAMESPACE = "default"
SERVER_POD = "chroma-chromadb-0"
SERVICE = "chroma-chromadb"
READY_TIMEOUT_S = 90

#: A client that writes and reads through a Chroma HTTP endpoint. Run in a pod
#: (the e2e client image, or a legacy Chroma image for the legacy client) with argv
#: HOST PORT add|read; prints one JSON line.
CLIENT = """
import json, os, sys
import chromadb
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = os.environ.get("CHROMA_TOKEN")
headers = {"Authorization": f"Bearer {token}"} if token else None
client = chromadb.HttpClient(host=host, port=port, headers=headers)
col = client.get_or_create_collection("e2e", embedding_function=None)
if mode == "add":
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["apple", "banana"])
nearest = []
if col.count():
    nearest = col.query(query_embeddings=[[0.9, 0.1]], n_results=1)["ids"][0]
print(json.dumps({"count": col.count(), "nearest": nearest}))
"""


def render(values: dict[str, Any] | None = None, *, gateway: bool = False) -> dict[str, str]:
    """Render the chart; by default with Chroma served directly (gateway off), as the
    suites about Chroma's own pod want. ``gateway=True`` keeps the chart's own default."""
    merged = dict(values or {})
    if not gateway:
        merged["gateway"] = {"enabled": False, **merged.get("gateway", {})}
    return chart().render(merged, name=RELEASE, namespace=NAMESPACE)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PodRunner]:
    with PodRunner(tmp_path / "cluster", namespace=NAMESPACE) as runner:
        yield runner


def install(cluster: PodRunner, values: dict[str, Any] | None = None, *, gateway: bool = False) -> Pod:
    """Apply the render, start the workloads, wait for the Chroma pod to be ready."""
    cluster.apply(render(values, gateway=gateway))
    cluster.prepare_images()
    cluster.start_workloads()
    return cluster.wait_ready(SERVER_POD, READY_TIMEOUT_S)


def run_client(
    cluster: PodRunner,
    mode: str,
    *,
    host: str = SERVICE,
    port: int = 8000,
    image: str = CLIENT_IMAGE,
    name: str = "client",
    token_secret: str | None = None,
) -> dict[str, Any]:
    """Run :data:`CLIENT` in a pod of its own; the parsed JSON line it printed.

    ``token_secret``: a Secret whose ``token`` key the client sends as a bearer token.
    """
    env: list[dict[str, Any]] = [
        {"name": "ANONYMIZED_TELEMETRY", "value": "False"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if token_secret:
        env.append(
            {"name": "CHROMA_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}}
        )
    result: JobResult = cluster.run_pod(
        {
            "metadata": {"name": f"{name}-{mode}", "labels": {"app": "e2e-client"}},
            "spec": {
                "containers": [
                    {
                        "name": "client",
                        "image": image,
                        "command": ["python3", "-c", CLIENT, host, str(port), mode],
                        "env": env,
                    }
                ]
            },
        },
        timeout=90,
    )
    logs = result.logs()
    assert result.succeeded, f"client pod failed ({result.error}):\n{logs}"
    return json.loads(logs.strip().splitlines()[-1])


def assert_helm_tests_pass(cluster: PodRunner) -> None:
    results = cluster.run_tests(timeout=90)
    assert set(results) == {"chroma-chromadb-test-heartbeat", "chroma-chromadb-test-collection"}
    for name, result in results.items():
        if not result.succeeded:
            # What the server saw of it (its gateway, when there is one) goes with the failure.
            server = cluster.pod(SERVER_POD)
            seen = "\n".join(f"{c.name}:\n{log_tail(c.log)}" for c in server.containers)
            raise AssertionError(f"helm test {name} failed ({result.error}):\n{result.logs()}\n{seen}")


#: Tries one TCP connection (3 s) and, when it opens and a path is given, one HTTP GET.
PROBE = """
import json, socket, sys, urllib.request, urllib.error
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    socket.create_connection((host, port), timeout=3).close()
except socket.timeout:
    print(json.dumps({"result": "timeout"})); sys.exit(0)
except OSError as exc:
    print(json.dumps({"result": "refused", "error": str(exc)})); sys.exit(0)
status = None
if path != "-":
    try:
        status = urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10).status
    except urllib.error.HTTPError as exc:
        status = exc.code
print(json.dumps({"result": "open", "status": status}))
"""


def probe(
    cluster: PodRunner, namespace: str, labels: dict[str, str], host: str, port: int, path: str = "-"
) -> dict[str, Any]:
    """Connect from a pod of ``namespace`` with ``labels``; its verdict."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    result = cluster.run_pod(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "probe",
                        "image": CLIENT_IMAGE,
                        "command": ["python3", "-c", PROBE, host, str(port), path],
                    }
                ]
            },
        },
        timeout=60,
    )
    assert result.succeeded, result.logs()
    verdict: dict[str, Any] = json.loads(result.logs().strip().splitlines()[-1])
    return verdict
