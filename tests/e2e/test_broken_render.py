"""A chart mistake makes the runner fail, naming the pod and container, with its log."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.conftest import SERVER_POD, render
from tests.podrunner.runner import PodError, PodRunner


def broken(edit: str) -> dict[str, str]:
    """The default render with one deliberate mistake in the StatefulSet."""
    rendered = render()
    path = next(p for p in rendered if p.endswith("templates/statefulset.yaml"))
    sts = yaml.safe_load(rendered[path])
    chroma = sts["spec"]["template"]["spec"]["containers"][0]
    if edit == "config path":
        chroma["args"] = ["run", "/etc/chroma/chroma.yaml"]
    elif edit == "probe port":
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            chroma[probe]["httpGet"]["port"] = 9000
    rendered[path] = yaml.safe_dump(sts)
    return rendered


def test_wrong_config_path_fails_with_pod_container_and_log(cluster: PodRunner) -> None:
    cluster.apply(broken("config path"))
    cluster.start_workloads()
    with pytest.raises(PodError) as err:
        cluster.wait_ready(SERVER_POD, 60)
    message = str(err.value)
    assert f"pod {SERVER_POD}, container chroma" in message
    assert "exited with code" in message
    assert "/etc/chroma/chroma.yaml" in message.split("last log lines", 1)[1]


def test_probe_on_wrong_port_never_gets_ready(cluster: PodRunner) -> None:
    cluster.apply(broken("probe port"))
    cluster.start_workloads()
    with pytest.raises(PodError) as err:
        cluster.wait_ready(SERVER_POD, 8)
    message = str(err.value)
    assert f"pod {SERVER_POD}, container chroma" in message
    assert "not ready after 8s" in message and ":9000" in message
