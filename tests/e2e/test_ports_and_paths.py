"""A non-default server port, Service port and data directory, end to end."""

from __future__ import annotations

from tests.e2e.conftest import (
    SERVER_POD,
    SERVICE,
    assert_helm_tests_pass,
    install,
    run_client,
)
from tests.podrunner.runner import PodRunner

VALUES = {
    "chromadb": {"serverHttpPort": 8123, "persistDirectory": "/var/lib/chroma"},
    "service": {"port": 80},
}


def test_custom_port_and_persist_directory(cluster: PodRunner) -> None:
    pod = install(cluster, VALUES)
    assert pod.container("chroma").spec["ports"][0]["containerPort"] == 8123
    # Service port 80 -> target port "http" (8123) in the pod, as kube-proxy would.
    assert run_client(cluster, "add", port=80) == {"count": 2, "nearest": ["a"]}
    assert run_client(
        cluster, "read", host=SERVER_POD + ".chroma-chromadb-headless", port=8123, name="direct"
    ) == {"count": 2, "nearest": ["a"]}
    assert_helm_tests_pass(cluster)

    data = cluster.pvc_dir(f"data-{SERVER_POD}")
    assert (data / "chroma.sqlite3").exists()
    listing = cluster.exec(SERVER_POD, "chroma", ["ls", "/var/lib/chroma"]).stdout.split()
    assert "chroma.sqlite3" in listing

    cluster.restart_pod(SERVER_POD)
    assert run_client(cluster, "read", port=80) == {"count": 2, "nearest": ["a"]}
    assert cluster.service_url(SERVICE, 80) == f"http://{cluster.pod(SERVER_POD).ip}:80"
