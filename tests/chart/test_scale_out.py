"""The gateway tier (architecture: gateway, docs/scale-out.md): only gateway pods, in a
Deployment with an autoscaler, a disruption budget and a topology spread, in front of a
Chroma elsewhere; what needs a local data directory is refused with a message that says
what to change."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from chromactl.config import parse_config
from tests.chart.helm import (
    TIER_CHROMA_URL,
    everything_values,
    gateway_tier_values,
    render,
    render_error,
)

GATEWAY_SELECTOR = {
    "app.kubernetes.io/name": "chromadb",
    "app.kubernetes.io/instance": "chroma",
    "app.kubernetes.io/component": "gateway",
}


def tier(**overrides: Any) -> dict[str, Any]:
    """The tier's values with top-level keys replaced by ``overrides``."""
    return {"architecture": "gateway", "scaleOut": {"chromaUrl": TIER_CHROMA_URL}, **overrides}


def test_only_the_gateway_runs_and_every_selector_finds_its_pods() -> None:
    r = render(gateway_tier_values())
    kinds = {kind for kind, _ in r.kinds()}
    assert "StatefulSet" not in kinds
    assert not r.has("Service", "chroma-chromadb-headless")
    assert not r.has("ConfigMap", "chroma-chromadb-config")  # Chroma's own config: no Chroma here
    assert not any(kind == "CronJob" for kind in kinds)
    dep = r.get("Deployment", "chroma-chromadb")
    pod = dep["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["gateway"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == GATEWAY_SELECTOR
    assert GATEWAY_SELECTOR.items() <= labels.items()
    # Everything that selects the serving pods selects these.
    assert r.get("Service", "chroma-chromadb")["spec"]["selector"] == GATEWAY_SELECTOR
    assert r.get("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == GATEWAY_SELECTOR
    assert r.get("Service", "chroma-chromadb-metrics")["spec"]["selector"] == GATEWAY_SELECTOR
    assert r.get("PodMonitor")["spec"]["selector"]["matchLabels"] == GATEWAY_SELECTOR
    hpa = r.get("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "chroma-chromadb",
    }


def test_no_data_directory_is_mounted_and_the_config_points_at_the_remote_chroma() -> None:
    r = render(gateway_tier_values())
    spec = r.get("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"] for v in spec["volumes"]}
    assert "data" not in mounts and "data" not in volumes
    assert not any(name.startswith("backup") for name in mounts | volumes)
    assert mounts <= volumes
    config = yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])
    settings = parse_config(config, source="rendered chromactl.yaml")
    assert settings.chroma.url == TIER_CHROMA_URL
    assert settings.gateway.metrics.internals and not settings.gateway.metrics.data_directory
    assert settings.gateway.auth.enabled and settings.gateway.tls.enabled
    assert "backup" not in config
    names = r.get("Certificate")["spec"]["dnsNames"]  # the Service's names; no per-pod names
    assert "chroma-chromadb.vectors.svc.cluster.local" in names
    assert not any("headless" in n for n in names)


def test_replicas_autoscaler_budget_and_spread() -> None:
    r = render(tier())
    dep = r.get("Deployment")
    assert "replicas" not in dep["spec"]  # the autoscaler owns it
    hpa = r.get("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert r.get("PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": GATEWAY_SELECTOR},
    }
    spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [(s["topologyKey"], s["whenUnsatisfiable"]) for s in spread] == [
        ("kubernetes.io/hostname", "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
    ]
    assert all(s["labelSelector"]["matchLabels"] == GATEWAY_SELECTOR for s in spread)
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    fixed = render(
        tier(
            scaleOut={
                "chromaUrl": TIER_CHROMA_URL,
                "replicas": 4,
                "autoscaling": {"enabled": False},
                "minAvailable": 0,
                "spread": "DoNotSchedule",
            }
        )
    )
    assert fixed.get("Deployment")["spec"]["replicas"] == 4
    assert not fixed.has("HorizontalPodAutoscaler") and not fixed.has("PodDisruptionBudget")
    own = fixed.get("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {s["whenUnsatisfiable"] for s in own} == {"DoNotSchedule"}

    mine = [
        {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    ]
    custom = render(tier(topologySpreadConstraints=mine)).get("Deployment")["spec"]["template"]["spec"]
    assert custom["topologySpreadConstraints"] == [
        {**mine[0], "labelSelector": {"matchLabels": GATEWAY_SELECTOR}}
    ]


def test_alerts_about_local_data_stay_out_and_the_rest_stay_in() -> None:
    def alerts(values: dict[str, Any]) -> set[str]:
        rule = render(values).get("PrometheusRule")
        return {a["alert"] for g in rule["spec"]["groups"] for a in g["rules"]}

    single = alerts(everything_values())
    tiered = alerts(gateway_tier_values())
    assert {"ChromaDown", "ChromaNotReady", "ChromaHighErrorRate", "ChromaHighLatency"} <= tiered
    assert single - tiered == {
        "ChromaVolumeAlmostFull",
        "ChromaVolumeFillingUp",
        "ChromaWriteLogBacklog",
        "ChromaBackupFailing",
        "ChromaBackupTooOld",
        "ChromaBackupDrillOverdue",
        "ChromaBackupCopyFailing",
        "ChromaBackupJournalLagging",
        "ChromaBackupJournalBroken",
    }


def test_notes_say_what_runs_and_where_the_data_is() -> None:
    notes = render(tier()).notes
    assert "Deployment chroma-chromadb" in notes and TIER_CHROMA_URL in notes
    assert "2 to 10 pods" in notes
    assert "PersistentVolumeClaim" not in notes and "docs/scale-out.md#backups" in notes


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"architecture": "gateway"}, "Set scaleOut.chromaUrl"),
        (tier(scaleOut={"chromaUrl": "chroma:8000"}), "http(s)://host:port"),
        (tier(scaleOut={"chromaUrl": "http://chroma:8000/api/v2"}), "without a path"),
        (tier(gateway={"enabled": False}), "gateway.enabled: false leaves nothing to run"),
        (tier(backup={"enabled": True, "target": "s3://b/p"}), "Remove backup.enabled"),
        (tier(backup={"restore": {"enabled": True}}), "Remove backup.restore.enabled"),
        (tier(podDisruptionBudget={"enabled": True}), "scaleOut.minAvailable"),
        (
            tier(gateway={"limits": {"enabled": True, "tenants": {"acme": {"maxCollections": 5}}}}),
            "gateway.limits.tenants.acme.maxCollections cannot be checked",
        ),
        (
            tier(networkPolicy={"egress": {"enabled": True}}),
            "Add a networkPolicy.egress.rules entry for Chroma's frontend",
        ),
        (
            tier(
                scaleOut={"chromaUrl": TIER_CHROMA_URL, "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}
            ),
            "raise maxReplicas",
        ),
    ],
)
def test_what_cannot_apply_is_refused_with_what_to_change(values: dict[str, Any], expected: str) -> None:
    assert expected in render_error(values)


def test_single_node_is_unchanged_by_the_tier_values() -> None:
    """The default architecture renders Chroma's StatefulSet and ignores scaleOut."""
    r = render({"scaleOut": {"chromaUrl": TIER_CHROMA_URL, "replicas": 5}})
    assert r.has("StatefulSet") and not r.has("Deployment") and not r.has("HorizontalPodAutoscaler")
    assert r.get("Service", "chroma-chromadb")["spec"]["selector"]["app.kubernetes.io/component"] == "server"
