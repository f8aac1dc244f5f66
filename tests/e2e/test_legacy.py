"""``chromadb.apiVersion=0.6.3``: the legacy Python server, configured by the rendered env."""

from __future__ import annotations

import re

from tests.e2e.conftest import SERVER_POD, assert_helm_tests_pass, install, run_client
from tests.podrunner.runner import PodRunner

VERSION = "0.6.3"
VALUES = {"chromadb": {"apiVersion": VERSION}}


def test_legacy_server_runs_from_rendered_env(cluster: PodRunner) -> None:
    pod = install(cluster, VALUES)
    chroma = pod.container("chroma")
    assert chroma.argv[:2] == ["uvicorn", "chromadb.app:app"]
    assert chroma.spec["image"] == f"ghcr.io/chroma-core/chroma:{VERSION}"
    # The rendered log config is the one uvicorn loaded: its format
    # ("<time> INFO uvicorn.error: ...") is in the log, not uvicorn's default "INFO:  ...".
    assert re.search(r"INFO uvicorn\.error: ", cluster.logs(SERVER_POD, "chroma"))

    legacy_client = f"ghcr.io/chroma-core/chroma:{VERSION}"
    assert run_client(cluster, "add", image=legacy_client) == {"count": 2, "nearest": ["a"]}
    # PERSIST_DIRECTORY from the rendered env put the data on the claim.
    assert (cluster.pvc_dir(f"data-{SERVER_POD}") / "chroma.sqlite3").exists()
    assert_helm_tests_pass(cluster)

    cluster.restart_pod(SERVER_POD)
    assert run_client(cluster, "read", image=legacy_client) == {"count": 2, "nearest": ["a"]}
