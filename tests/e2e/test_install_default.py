"""The default install: ready through its own probes, helm tests pass, data survives a restart."""

from __future__ import annotations

from tests.e2e.conftest import (
    SERVER_POD,
    SERVICE,
    assert_helm_tests_pass,
    install,
    run_client,
)
from tests.podrunner.runner import PodRunner


def test_default_install_serves_keeps_data_and_passes_helm_tests(cluster: PodRunner) -> None:
    pod = install(cluster)
    chroma = pod.container("chroma")
    # Ready because the rendered probes passed, not because a process exists.
    assert chroma.startup is not None and chroma.startup.successes >= 1
    assert chroma.readiness is not None and chroma.readiness.successes >= 1
    # The rendered security context is what runs.
    assert cluster.exec(SERVER_POD, "chroma", ["id", "-u"]).stdout.strip() == "10001"

    assert_helm_tests_pass(cluster)

    added = run_client(cluster, "add")
    assert added == {"count": 2, "nearest": ["a"]}
    assert (cluster.pvc_dir(f"data-{SERVER_POD}") / "chroma.sqlite3").exists()

    cluster.restart_pod(SERVER_POD)
    assert cluster.pod(SERVER_POD) is not pod
    assert run_client(cluster, "read") == {"count": 2, "nearest": ["a"]}

    # And from outside the pods, through the Service's address.
    host, port = cluster.service_address(SERVICE, 8000)
    assert (host, port) == (cluster.pod(SERVER_POD).ip, 8000)


def test_notes_name_the_service_and_the_claim() -> None:
    from tests.e2e.conftest import render

    notes = next(t for p, t in render().items() if p.endswith("NOTES.txt"))
    assert "http://chroma-chromadb:8000" in notes
    assert f"data-{SERVER_POD}" in notes
