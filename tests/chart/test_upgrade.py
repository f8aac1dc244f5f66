"""`helm upgrade` from the previous release keeps credentials and data.

The previous chart is the archive released as 0.1.0 (tests/fixtures/charts). Its install is
rendered, its objects are put in a fake cluster (tests/chart/fake_kube.py) the way Helm leaves
them (release annotations), and the current chart is rendered as an upgrade of the same
release against that cluster, so the templates' `lookup` really finds the old objects.

What this proves: the generated credentials come back unchanged (no rotation that would lock
clients out), the StatefulSet fields Kubernetes refuses to change (selector, serviceName,
volumeClaimTemplates, podManagementPolicy) are the same, so `helm upgrade` is not rejected and
the PVC (the data) is kept, and no object of the previous release disappears (Helm would
delete it). What it does not prove: the API server's own validation and apply (no real
cluster), or the pods' behaviour after the upgrade (the e2e and kind workflow do that).
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.fake_kube import FakeCluster, helm_config
from tests.chart.helm import NAMESPACE, RELEASE, ROOT, Render, chart, render

PREVIOUS = ROOT / "tests" / "fixtures" / "charts" / "chromadb-0.1.0.tgz"
IMMUTABLE = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")
#: user values that worked on the previous release and keep working
CASES: dict[str, dict[str, Any]] = {
    "token": {},
    "basic": {"chromadb": {"auth": {"type": "basic"}}},
    "legacy": {"chromadb": {"apiVersion": "0.6.3"}},
    "sized": {"chromadb": {"dataVolumeSize": "50Gi", "dataVolumeStorageClass": "fast"}},
}


@pytest.fixture(scope="module")
def previous() -> helm_python.Chart:
    return helm_python.Chart.load(PREVIOUS)


def installed(previous: helm_python.Chart, values: dict[str, Any]) -> Render:
    return Render(previous.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))


def cluster_after_install(release: Render) -> FakeCluster:
    cluster = FakeCluster()
    for obj in release.objects:
        annotations = obj["metadata"].setdefault("annotations", {})
        if annotations.get("helm.sh/hook"):
            continue  # hooks (test pods) are not kept as release objects
        annotations["meta.helm.sh/release-name"] = RELEASE
        annotations["meta.helm.sh/release-namespace"] = NAMESPACE
        cluster.add(obj, NAMESPACE)
    return cluster


def upgraded(cluster: FakeCluster, values: dict[str, Any]) -> Render:
    with helm_config(cluster, NAMESPACE) as config:
        return Render(
            config.render(chart(), values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)
        )


def test_the_fixture_is_the_previous_release(previous: helm_python.Chart) -> None:
    assert previous.version == "0.1.0"
    assert chart().version != previous.version


@pytest.mark.parametrize("case", ["token", "basic", "sized"])
def test_upgrade_keeps_generated_credentials(previous: helm_python.Chart, case: str) -> None:
    before = installed(previous, CASES[case])
    cluster = cluster_after_install(before)
    after = upgraded(cluster, CASES[case])
    assert "/api/v1/namespaces/vectors/secrets/chromadb-auth" in [r.split("?")[0] for r in cluster.requests]
    old, new = before.get("Secret", "chromadb-auth"), after.get("Secret", "chromadb-auth")
    assert new["data"] == old["data"]
    assert new["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_without_the_old_secret_the_credentials_would_change(previous: helm_python.Chart) -> None:
    """The check above can fail: with nothing to look up, a new token is generated."""
    before = installed(previous, {})
    after = upgraded(FakeCluster(), {})
    assert after.get("Secret", "chromadb-auth")["data"] != before.get("Secret", "chromadb-auth")["data"]


def test_another_releases_credentials_are_not_taken_over(previous: helm_python.Chart) -> None:
    cluster = cluster_after_install(installed(previous, {}))
    for obj in cluster.objects:
        obj["metadata"]["annotations"]["meta.helm.sh/release-name"] = "someone-else"
    with pytest.raises(helm_python.HelmError, match=r"chromadb\.auth\.existingSecret"):
        upgraded(cluster, {})


def immutable(release: Render) -> dict[str, Any]:
    spec = release.statefulset["spec"]
    return {key: spec.get(key) for key in IMMUTABLE}


@pytest.mark.parametrize("case", CASES)
def test_statefulset_immutable_fields_are_unchanged(previous: helm_python.Chart, case: str) -> None:
    before = installed(previous, CASES[case])
    after = upgraded(cluster_after_install(before), CASES[case])
    assert immutable(after) == immutable(before)
    assert before.statefulset["metadata"]["name"] == after.statefulset["metadata"]["name"]
    assert after.statefulset["spec"].get("persistentVolumeClaimRetentionPolicy") == before.statefulset[
        "spec"
    ].get("persistentVolumeClaimRetentionPolicy")


def test_a_changed_volume_template_stops_with_what_to_run(previous: helm_python.Chart) -> None:
    """A change Kubernetes would refuse is caught by the chart itself, before anything changes
    (tests/chart/test_migrate.py runs the whole upgrade against an API server that refuses it)."""
    before = installed(previous, {})
    stop = r"kubectl delete statefulset chroma-chromadb .*--cascade=orphan"
    with pytest.raises(helm_python.HelmError, match=stop):
        upgraded(cluster_after_install(before), {"chromadb": {"dataVolumeSize": "99Gi"}})


@pytest.mark.parametrize("case", CASES)
def test_no_object_of_the_previous_release_disappears(previous: helm_python.Chart, case: str) -> None:
    before = installed(previous, CASES[case])
    after = upgraded(cluster_after_install(before), CASES[case])
    missing = set(before.kinds()) - set(after.kinds())
    assert not missing, f"helm upgrade would delete {sorted(missing)}"


def test_data_is_kept_on_uninstall_by_default() -> None:
    """The PVC outlives `helm uninstall` (Retain) and so do the credentials (resource-policy keep)."""
    r = render()
    assert r.statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert r.get("Secret", "chromadb-auth")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_old_image_values_get_a_clear_error() -> None:
    """0.1.0 took the registry inside image.repository; 0.2.0 says which keys to change."""
    values = yaml.safe_load("image:\n  registry: mirror.example\n  repository: ghcr.io/chroma-core/chroma\n")
    with pytest.raises(helm_python.HelmError, match=r"image\.registry"):
        chart().render(values, name=RELEASE, namespace=NAMESPACE)
