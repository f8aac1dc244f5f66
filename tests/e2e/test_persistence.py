"""``chromadb.isPersistent=false``: an emptyDir, so a pod restart loses the data, as NOTES warn."""

from __future__ import annotations

from tests.e2e.conftest import SERVER_POD, install, render, run_client
from tests.podrunner.runner import PodRunner

VALUES = {"chromadb": {"isPersistent": False}}


def test_not_persistent_loses_data_on_restart(cluster: PodRunner) -> None:
    notes = next(t for p, t in render(VALUES).items() if p.endswith("NOTES.txt"))
    assert "LOST" in notes and "isPersistent" in notes

    install(cluster, VALUES)
    assert run_client(cluster, "add") == {"count": 2, "nearest": ["a"]}
    # A container restart keeps an emptyDir; only a new pod starts empty.
    cluster.restart_pod(SERVER_POD)
    assert run_client(cluster, "read") == {"count": 0, "nearest": []}
    assert not cluster.pvc_dir(f"data-{SERVER_POD}").exists()
