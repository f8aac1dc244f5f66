"""Scheduling, resources, labels and extra env/volumes of the Chroma pod."""

from __future__ import annotations

from tests.chart.helm import render


def test_resources_default_and_override() -> None:
    assert render().container()["resources"]["limits"]["memory"] == "2Gi"
    r = render({"resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}}})
    assert r.container()["resources"]["requests"]["cpu"] == "2"
    assert r.container()["resources"]["limits"]["memory"] == "8Gi"


def test_scheduling_values_reach_the_pod(everything) -> None:
    spec = everything.pod_spec
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in spec["affinity"]
    assert spec["priorityClassName"] == "high-priority"
    (tsc,) = spec["topologySpreadConstraints"]
    assert tsc["topologyKey"] == "topology.kubernetes.io/zone"
    assert tsc["labelSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "chromadb",
            "app.kubernetes.io/instance": "chroma",
            "app.kubernetes.io/component": "server",
        }
    }


def test_scheduling_defaults_are_absent(default) -> None:
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "topologySpreadConstraints"):
        assert key not in default.pod_spec


def test_common_and_pod_labels_and_annotations(everything) -> None:
    for obj in everything.objects:
        assert obj["metadata"]["labels"]["team"] == "search", obj["metadata"]["name"]
        assert obj["metadata"]["annotations"]["owner"] == "search-team", obj["metadata"]["name"]
    template = everything.statefulset["spec"]["template"]["metadata"]
    assert template["labels"]["tier"] == "data"
    assert template["annotations"]["example.com/scrape"] == "false"


def test_extra_env_volumes_and_mounts(everything) -> None:
    chroma = everything.container()
    assert {"name": "RUST_LOG", "value": "info"} in chroma["env"]
    assert chroma["envFrom"] == [{"configMapRef": {"name": "chroma-extra-env"}}]
    assert {"name": "extra", "mountPath": "/extra"} in chroma["volumeMounts"]
    assert {"name": "extra", "emptyDir": {}} in everything.pod_spec["volumes"]


def test_image_registry_digest_and_pull_secrets() -> None:
    r = render({"image": {"registry": "mirror.example", "digest": "sha256:" + "a" * 64}})
    assert r.container()["image"] == "mirror.example/chroma-core/chroma@sha256:" + "a" * 64
    g = render(
        {
            "global": {"imageRegistry": "global.example", "imagePullSecrets": ["a", {"name": "b"}]},
            "image": {"pullSecrets": ["a", "c"]},
        }
    )
    assert g.container()["image"].startswith("global.example/")
    for _, spec in g.pod_specs():
        assert spec["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    test_pod = g.get("Pod", "chroma-chromadb-test-heartbeat")
    assert test_pod["spec"]["containers"][0]["image"].startswith("global.example/chromadb-chart/chromactl:")


def test_pod_disruption_budget() -> None:
    assert not render().has("PodDisruptionBudget")
    pdb = render({"podDisruptionBudget": {"enabled": True}}).get("PodDisruptionBudget", "chroma-chromadb")
    assert pdb["spec"]["maxUnavailable"] == 0
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "chroma"


def test_termination_grace_period() -> None:
    assert render({"terminationGracePeriodSeconds": 90}).pod_spec["terminationGracePeriodSeconds"] == 90
