"""Every container of the chart runs from its image (``make images``), as on a cluster: the
image's files, its entrypoint and user under the rendered spec, nothing of this checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import READY_TIMEOUT_S, SERVER_POD, install, render
from tests.podrunner.runner import PodError, PodRunner

REPO = Path(__file__).resolve().parents[2]
EXISTS = "import os, sys; print(os.path.exists(sys.argv[1]))"


def test_the_default_install_runs_from_the_images(cluster: PodRunner) -> None:
    pod = install(cluster, gateway=True)
    images = {c.name: c.spec["image"] for c in pod.containers}
    assert images == {
        "chroma": "ghcr.io/chroma-core/chroma:1.5.9",
        "gateway": "ghcr.io/chromadb-chart/chromactl:0.2.0",
    }
    gateway = cluster.exec(SERVER_POD, "gateway", ["python", "-c", EXISTS, str(REPO)])
    assert gateway.returncode == 0, gateway.stderr
    assert gateway.stdout.strip() == "False"  # the checkout is not there
    # chromactl's image has no shell at all; Chroma's stand-in keeps Debian's, and its config.
    assert cluster.exec(SERVER_POD, "gateway", ["sh", "-c", "true"]).returncode == 128
    assert cluster.exec(SERVER_POD, "chroma", ["cat", "/config.yaml"]).returncode == 0
    assert cluster.exec(SERVER_POD, "gateway", ["id", "-u"]).stdout.strip() == "10001"


def with_shell_wrapper(rendered: dict[str, str]) -> dict[str, str]:
    """The render with the gateway started through ``sh -c`` (what a chart change that wraps
    the command in a shell would render)."""
    out = {}
    for path, text in rendered.items():
        if path.endswith("statefulset.yaml"):
            doc = yaml.safe_load(text)
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["name"] == "gateway":
                    c["command"] = ["sh", "-c", 'exec "$0" "$@"', *c["command"]]
            text = yaml.safe_dump(doc)
        out[path] = text
    return out


def test_a_shell_in_the_chromactl_image_fails_the_pod_clearly(cluster: PodRunner) -> None:
    rendered = render(gateway=True)
    assert any(p.endswith("statefulset.yaml") for p in rendered)
    cluster.apply(with_shell_wrapper(rendered))
    cluster.start_workloads()
    with pytest.raises(PodError) as failed:
        cluster.wait_ready(SERVER_POD, READY_TIMEOUT_S)
    message = str(failed.value)
    assert "container gateway (image ghcr.io/chromadb-chart/chromactl:0.2.0)" in message
    assert "exited with code 128" in message
    assert 'exec: "sh": executable file not found in $PATH' in message
