"""Every pod the chart renders is started by the runner, for every value set in ci/."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART_DIR
from tests.e2e.conftest import NAMESPACE, READY_TIMEOUT_S, render
from tests.e2e.test_tls import CA, tls_secret
from tests.podrunner.runner import PodRunner, hook_kinds, parse_manifests

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "legacy-0.6.3": {"chromadb": {"apiVersion": "0.6.3"}},
} | {path.stem: yaml.safe_load(path.read_text()) for path in sorted(CHART_DIR.glob("ci/*.yaml"))}

#: What a user creates beside the release when a value set refers to it.
PREREQUISITES: list[dict[str, Any]] = [
    {"kind": "ConfigMap", "metadata": {"name": "chroma-extra-env"}, "data": {"CHROMA_E2E_EXTRA": "1"}},
    {"kind": "Secret", "metadata": {"name": "chroma-backup-credentials"}, "data": {}},
]


def cert_manager(rendered: dict[str, str], ca: CA) -> list[dict[str, Any]]:
    """What cert-manager writes for each rendered ``Certificate`` (its Secret, signed by
    ``ca``), and the client CA ConfigMap a ``chromadb.tls.clientCA`` value refers to."""
    objects: list[dict[str, Any]] = []
    for doc in parse_manifests(rendered, NAMESPACE).of_kind("Certificate"):
        crt, key, _ = ca.issue(doc["spec"]["dnsNames"])
        objects.append(tls_secret(doc["spec"]["secretName"], crt, key, ca.pem))
    for doc in parse_manifests(rendered, NAMESPACE).of_kind("StatefulSet"):
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            if volume["name"] == "tls-client-ca" and "configMap" in volume:
                key = volume["configMap"]["items"][0]["key"]
                objects.append(
                    {
                        "kind": "ConfigMap",
                        "metadata": {"name": volume["configMap"]["name"]},
                        "data": {key: ca.pem},
                    }
                )
    return objects


#: ``global.imageRegistry`` in ci values: a private mirror of ghcr.io that keeps its paths
#: (the chart renders ``registry.example.com/chroma-core/chroma:...``).
MIRRORS = {"registry.example.com": "ghcr.io"}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_pod_runs(value_set: str, tmp_path: Any) -> None:
    rendered = render(VALUE_SETS[value_set], gateway=True)  # the chart's own defaults
    with PodRunner(tmp_path / "cluster", namespace=NAMESPACE, mirrors=MIRRORS) as cluster:
        cluster.apply(PREREQUISITES + cert_manager(rendered, CA("internal-ca")))
        cluster.apply(rendered)
        cluster.prepare_images()
        sources = cluster.pod_sources()
        assert "StatefulSet/chroma-chromadb" in sources

        for pod in cluster.start_workloads():
            cluster.wait_ready(pod.name, READY_TIMEOUT_S)
        for name, result in cluster.run_tests(timeout=90).items():
            assert result.succeeded, f"helm test {name}: {result.error}\n{result.logs()}"
        store = parse_manifests(rendered, NAMESPACE)
        for kind in ("Job", "CronJob"):
            for obj in store.of_kind(kind):
                if hook_kinds(obj):
                    continue
                name = obj["metadata"]["name"]
                result = cluster.run_job(name, 90, kind=kind)
                assert result.succeeded, f"{kind} {name}: {result.error}\n{result.logs()}"

        never_run = sorted(set(sources) - cluster.ran)
        assert not never_run, f"{value_set}: rendered but never started: {never_run}"
