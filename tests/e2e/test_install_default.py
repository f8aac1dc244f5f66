"""The default install (gateway in front of Chroma): ready through its own probes, helm
tests pass, clients reach it by Service name with the generated token, data survives a
restart of the pod."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.e2e.conftest import (
    SERVER_POD,
    SERVICE,
    assert_helm_tests_pass,
    install,
    render,
    run_client,
)
from tests.podrunner.runner import PodRunner

AUTH_SECRET = "chromadb-auth"


def test_default_install_serves_keeps_data_and_passes_helm_tests(cluster: PodRunner) -> None:
    pod = install(cluster, gateway=True)
    assert [c.name for c in pod.containers] == ["chroma", "gateway"]
    for container in pod.containers:
        # Ready because the rendered probes passed, not because a process exists.
        assert container.startup is not None and container.startup.successes >= 1
        assert container.readiness is not None and container.readiness.successes >= 1
    # The rendered security context is what runs.
    assert cluster.exec(SERVER_POD, "chroma", ["id", "-u"]).stdout.strip() == "10001"

    assert_helm_tests_pass(cluster)

    added = run_client(cluster, "add", token_secret=AUTH_SECRET)
    assert added == {"count": 2, "nearest": ["a"]}
    assert (cluster.pvc_dir(f"data-{SERVER_POD}") / "chroma.sqlite3").exists()

    # Through the Service from outside the pod: the gateway wants the token, and
    # Chroma itself listens on the pod's loopback only.
    url = cluster.service_url(SERVICE, 8000)
    assert httpx.get(f"{url}/api/v2/tenants/default_tenant", timeout=5).status_code == 401
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((pod.ip, 8001), timeout=5).close()

    cluster.restart_pod(SERVER_POD)
    assert cluster.pod(SERVER_POD) is not pod
    assert run_client(cluster, "read", token_secret=AUTH_SECRET) == {"count": 2, "nearest": ["a"]}


def test_notes_name_the_service_and_the_claim() -> None:
    notes = next(t for p, t in render(gateway=True).items() if p.endswith("NOTES.txt"))
    assert "http://chroma-chromadb:8000" in notes
    assert f"data-{SERVER_POD}" in notes
