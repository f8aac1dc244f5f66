"""`helm upgrade` of a release installed with amikos-tech/chromadb-chart: one command, data and
credentials kept (docs/migrate-from-amikos-chart.md).

The amikos releases are data (tests/fixtures/amikos: what its chart renders for release
`chroma` at 0.1.19, 0.1.23, 0.2.0 and 0.2.2), put into a fake API server the way Helm 3 leaves
them: release objects with Helm's ownership metadata, hooks without it, and the release record
Secret. Then the real Helm engine runs `helm upgrade chroma <this chart>` against it: lookups,
three-way patches, creates and deletes; the server refuses a StatefulSet update that changes an
immutable field with the real API server's error, so these tests fail the way a cluster would.
"""

from __future__ import annotations

import copy
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.amikos import CASES, STS, amikos_cluster, amikos_objects
from tests.chart.fake_kube import STATEFULSET_MUTABLE, FakeCluster, helm_config
from tests.chart.helm import NAMESPACE, RELEASE, ROOT, chart, render, set_values

OUR_0_1_0 = ROOT / "tests" / "fixtures" / "charts" / "chromadb-0.1.0.tgz"


def upgrade(
    cluster: FakeCluster, values: dict[str, Any] | None = None, target: helm_python.Chart | None = None
) -> dict[str, Any]:
    with helm_config(cluster, NAMESPACE, storage="secret") as config:
        return config.upgrade(target or chart(), RELEASE, values or {})


def fixed_spec(sts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sts["spec"].items() if k not in STATEFULSET_MUTABLE}


def uses_auth(case: str) -> bool:
    return any(o["kind"] == "Secret" for o in amikos_objects(case))


def values_for(case: str) -> dict[str, Any]:
    """What the user sets: the auth type they had, nothing else (the Chroma version is ours)."""
    return set_values("chromadb.auth.type=basic") if case.endswith("basic") and uses_auth(case) else {}


# ------------------------------------------------------------------------------- the switch


@pytest.mark.parametrize("case", CASES)
def test_one_helm_upgrade_switches_charts(case: str) -> None:
    cluster = amikos_cluster(case)
    before = copy.deepcopy(cluster.get("StatefulSet", STS))
    release = upgrade(cluster, values_for(case))
    assert release["status"] == "deployed" and release["revision"] == 2
    after = cluster.get("StatefulSet", STS)
    assert fixed_spec(after) == fixed_spec(before)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/chroma-core/chroma:1.5.9"
    labels = after["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in after["spec"]["selector"]["matchLabels"].items())
    # the volume the StatefulSet names is the one the amikos StatefulSet made, and it is still there
    assert cluster.find("PersistentVolumeClaim", f"data-{STS}-0", NAMESPACE)
    chroma = after["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in chroma["volumeMounts"]}
    assert mounts["data"] == "/data"
    # the amikos release's own objects that this chart does not render are gone (Helm deletes them)
    assert not cluster.find("ConfigMap", "chroma-chromadb-log-config", NAMESPACE)


@pytest.mark.parametrize("case", [c for c in CASES if uses_auth(c)])
def test_credentials_carry_over_unchanged(case: str) -> None:
    cluster = amikos_cluster(case)
    secret_before = copy.deepcopy(cluster.get("Secret", "chromadb-auth")["data"])
    header_cm = cluster.find("ConfigMap", "chroma-chromadb-token-auth-config", NAMESPACE)
    header_before = copy.deepcopy(header_cm["data"]) if header_cm else None
    upgrade(cluster, values_for(case))
    assert cluster.get("Secret", "chromadb-auth")["data"] == secret_before
    sts = cluster.get("StatefulSet", STS)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "chromadb-auth"
    gateway = yaml.safe_load(cluster.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])
    auth = gateway["gateway"]["auth"]
    if case.endswith("basic"):
        assert auth["basic"]["users"][0]["username_file"] == "/etc/chromactl/auth/username"
    else:
        assert auth["token"]["credentials"][0]["token_file"] == "/etc/chromactl/auth/token"
        header = cluster.get("ConfigMap", "chroma-chromadb-token-auth-config")["data"]
        if header_before is not None:
            assert header == header_before  # the hook-made ConfigMap is left as it was
        assert header["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"].upper() == "AUTHORIZATION"


def test_without_adoption_helm_would_refuse_the_hook_secret() -> None:
    """The amikos hook Secret has no Helm ownership: rendering it would make Helm stop with
    "invalid ownership metadata". The chart leaves it out of the release and mounts it."""
    cluster = amikos_cluster("0.1.23-token")
    release = upgrade(cluster)
    manifest = list(yaml.safe_load_all(release["manifest"]))
    rendered = [(o["kind"], o["metadata"]["name"]) for o in manifest if o]
    assert ("Secret", "chromadb-auth") not in rendered
    annotations = cluster.get("Secret", "chromadb-auth")["metadata"].get("annotations") or {}
    assert "meta.helm.sh/release-name" not in annotations


def test_a_release_without_credentials_is_told_auth_is_now_on() -> None:
    cluster = amikos_cluster("0.2.2-default")
    release = upgrade(cluster)
    assert "this upgrade turns authentication on" in release["notes"]
    assert cluster.get("Secret", "chromadb-auth")["data"]["token"]
    again = upgrade(cluster)  # the next upgrade keeps the token it generated and says nothing
    assert "turns authentication on" not in again["notes"]


def test_a_restart_of_the_upgrade_is_a_no_op() -> None:
    """A second `helm upgrade` with the same values changes nothing the API server refuses."""
    cluster = amikos_cluster("0.1.23-token")
    upgrade(cluster)
    token = cluster.get("Secret", "chromadb-auth")["data"]["token"]
    release = upgrade(cluster)
    assert release["revision"] == 3
    assert cluster.get("Secret", "chromadb-auth")["data"]["token"] == token


# ------------------------------------------------------------------- what a cluster refuses


def test_the_fake_api_server_refuses_like_a_cluster() -> None:
    """A chart that ignores the live StatefulSet (this chart's 0.1.0) fails the way a cluster
    makes it fail, and the StatefulSet is left as it was."""
    cluster = amikos_cluster("0.1.19-token")
    before = copy.deepcopy(cluster.get("StatefulSet", STS))
    with pytest.raises(helm_python.HelmError) as caught:
        upgrade(cluster, target=helm_python.Chart.load(OUR_0_1_0))
    assert (
        'StatefulSet.apps "chroma-chromadb" is invalid: spec: Forbidden: updates to statefulset spec '
        "for fields other than 'replicas'"
    ) in str(caught.value)
    assert fixed_spec(cluster.get("StatefulSet", STS)) == fixed_spec(before)


def test_a_change_the_statefulset_cannot_take_stops_before_anything_changes() -> None:
    cluster = amikos_cluster("0.2.2-default")
    with pytest.raises(helm_python.HelmError) as caught:
        upgrade(cluster, set_values("chromadb.dataVolumeSize=50Gi"))
    message = str(caught.value)
    assert "kubectl delete statefulset chroma-chromadb --namespace vectors --cascade=orphan" in message
    assert '"storage":"1Gi"' in message and '"storage":"50Gi"' in message
    assert cluster.writes == []


def test_after_the_orphan_delete_the_upgrade_replaces_the_statefulset() -> None:
    """The documented path: `kubectl delete statefulset --cascade=orphan` (the StatefulSet goes,
    its pod and volume stay), then the same `helm upgrade`."""
    cluster = amikos_cluster("0.2.2-default")
    values = set_values("chromadb.dataVolumeSize=50Gi")
    with pytest.raises(helm_python.HelmError):
        upgrade(cluster, values)
    cluster.remove("StatefulSet", STS, NAMESPACE)
    pod = cluster.get("Pod", f"{STS}-0", NAMESPACE)
    upgrade(cluster, values)
    sts = cluster.get("StatefulSet", STS)
    assert sts["spec"]["serviceName"] == "chroma-chromadb-headless"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # the orphaned pod matches the new selector, so the new StatefulSet adopts it (and its claim
    # data-chroma-chromadb-0, named from the same template and StatefulSet names)
    selector = sts["spec"]["selector"]["matchLabels"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_amikos_header_key_is_honoured() -> None:
    """A values file written for the amikos chart names the header `headerType`: the
    ConfigMap clients read it from says that header (the gateway accepts both)."""
    cluster = amikos_cluster("0.1.19-token")  # its header was an env variable, no ConfigMap
    upgrade(cluster, set_values("chromadb.auth.token.headerType=X-Chroma-Token"))
    header = cluster.get("ConfigMap", "chroma-chromadb-token-auth-config")["data"]
    assert header["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"] == "X-Chroma-Token"
    gateway = yaml.safe_load(cluster.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])
    assert "headers" not in gateway["gateway"]["auth"]["token"]  # both headers accepted


def test_a_secret_of_the_wrong_auth_type_is_named() -> None:
    cluster = amikos_cluster("0.1.23-basic")
    with pytest.raises(helm_python.HelmError, match=r'has no "token" key.*chromadb\.auth\.type=token'):
        upgrade(cluster)  # the values forget auth.type=basic
    assert cluster.writes == []


def test_rollback_returns_the_amikos_statefulset() -> None:
    """`helm rollback chroma 1` brings the amikos objects back (the data: see the doc)."""
    cluster = amikos_cluster("0.1.23-token")
    amikos = copy.deepcopy(cluster.get("StatefulSet", STS))
    upgrade(cluster)
    with helm_config(cluster, NAMESPACE, storage="secret") as config:
        config.rollback(RELEASE, version=1)
    back = cluster.get("StatefulSet", STS)
    assert (
        back["spec"]["template"]["spec"]["containers"][0]["image"]
        == amikos["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert cluster.find("ConfigMap", "chroma-chromadb-log-config", NAMESPACE)


def test_the_fixtures_are_what_the_amikos_chart_renders() -> None:
    """Each fixture names its chart version and holds the StatefulSet every version had."""
    for case in CASES:
        sts = next(o for o in amikos_objects(case) if o["kind"] == "StatefulSet")
        assert sts["spec"]["serviceName"] == STS and sts["spec"]["podManagementPolicy"] == "Parallel"
        assert sts["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "chromadb",
            "app.kubernetes.io/instance": RELEASE,
        }
    assert {c.split("-")[0] for c in CASES} == {"0.1.19", "0.1.23", "0.2.0", "0.2.2"}


# ------------------------------------------------------------ the migrate init container


def init_names(values: dict[str, Any]) -> list[str]:
    return [c["name"] for c in render(values).pod_spec.get("initContainers", [])]


def test_the_migrate_init_container_runs_before_chroma_by_default() -> None:
    r = render()
    (migrate,) = r.pod_spec["initContainers"]
    assert migrate["command"] == [
        "chromactl",
        "migrate",
        "snapshot",
        "--config=/etc/chromactl/config/chromactl.yaml",
        "--data-dir=/data",
        "--quiet",
    ]
    assert migrate["image"] == r.container("gateway")["image"]
    mounts = {m["name"]: m["mountPath"] for m in migrate["volumeMounts"]}
    assert mounts == {"chromactl-config": "/etc/chromactl/config", "data": "/data", "tmp": "/tmp"}
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"migrate": {"snapshot": False}}, "turned off"),
        ({"chromadb": {"apiVersion": "0.6.3"}}, "a 0.x server converts nothing"),
        ({"chromadb": {"isPersistent": False}}, "an emptyDir holds no 0.x data"),
        ({"gateway": {"enabled": False}}, "no chromactl config in the pod"),
    ],
)
def test_no_migrate_init_container_where_it_has_nothing_to_do(values: dict[str, Any], why: str) -> None:
    assert "migrate" not in init_names(values), why


def test_with_backups_the_snapshot_goes_to_the_backup_target() -> None:
    r = render(set_values("backup.enabled=true", "backup.volume.enabled=true"))
    migrate = next(c for c in r.pod_spec["initContainers"] if c["name"] == "migrate")
    assert {"name": "backup", "mountPath": "/backups"} in migrate["volumeMounts"]
    config = yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])
    assert config["backup"]["target"] == "/backups"  # what `migrate snapshot` uses without --repo
