"""The `metrics` and `openTelemetry` values: metrics Service, monitors, alerts, dashboard, OTLP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chromactl.config import parse_config
from tests.chart.helm import (
    CHART_DIR,
    ROOT,
    SERVER_SELECTOR,
    Render,
    everything_values,
    names_key,
    render,
    render_error,
)

ALERTS = [
    "ChromaDown",
    "ChromaNotReady",
    "ChromaHighErrorRate",
    "ChromaHighLatency",
    "ChromaVolumeAlmostFull",
    "ChromaVolumeFillingUp",
    "ChromaBackupFailing",
    "ChromaBackupTooOld",
    "ChromaBackupDrillOverdue",
    "ChromaBackupCopyFailing",
    "ChromaBackupJournalLagging",
    "ChromaBackupJournalBroken",
    "ChromaCertificateExpiring",
    "ChromaAuthFailureSpike",
    "ChromaWriteLogBacklog",
]
ALL_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}


def rules(r: Render) -> list[dict[str, Any]]:
    (group,) = r.get("PrometheusRule")["spec"]["groups"]
    return group["rules"]


def test_metrics_port_only_on_the_metrics_service() -> None:
    r = render({"ingress": {"enabled": True}})
    metrics = r.get("Service", "chroma-chromadb-metrics")
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert metrics["spec"]["selector"] == SERVER_SELECTOR
    assert metrics["spec"]["type"] == "ClusterIP"
    client = r.get("Service", "chroma-chromadb")
    assert [p["targetPort"] for p in client["spec"]["ports"]] == ["http"]
    for rule in r.get("Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "chroma-chromadb"
            assert backend["port"] in ({"name": "http"}, {"number": 8000})


def test_monitors_rules_and_dashboard_are_off_by_default() -> None:
    kinds = {k for k, _ in render().kinds()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not render().has("ConfigMap", "chroma-chromadb-dashboard")


def test_no_metrics_objects_without_the_gateway() -> None:
    r = render({"gateway": {"enabled": False}} | ALL_ON)
    kinds = {k for k, _ in r.kinds()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not r.has("Service", "chroma-chromadb-metrics")


def test_service_monitor_settings(everything: Render) -> None:
    sm = everything.get("ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["vectors"]}
    svc = everything.get("Service", "chroma-chromadb-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    # The selector picks the metrics Service only, not the client or headless ones.
    for name in ("chroma-chromadb", "chroma-chromadb-headless"):
        labels = everything.get("Service", name)["metadata"]["labels"]
        assert not sm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep["interval"] == "15s" and ep["scrapeTimeout"] == "5s"
    assert ep["scheme"] == "https" and ep["tlsConfig"]["serverName"] == "chroma-metrics"
    assert ep["authorization"]["credentials"] == {"name": "scrape-token", "key": "token"}
    assert ep["honorLabels"] is True
    assert ep["relabelings"][0]["targetLabel"] == "node"
    assert ep["metricRelabelings"][0]["action"] == "drop"
    assert svc["spec"]["ports"][0]["port"] == 9090


def test_pod_monitor_keeps_the_service_job_label(everything: Render) -> None:
    pm = everything.get("PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == SERVER_SELECTOR
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] == "metrics"
    assert ep["relabelings"][0] == {
        "targetLabel": "job",
        "replacement": "chroma-chromadb-metrics",
        "action": "replace",
    }
    assert ep["basicAuth"]["username"] == {"name": "scrape-auth", "key": "user"}


def test_service_monitor_needs_the_metrics_service() -> None:
    err = render_error({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}})
    assert names_key(err, "metrics.service.enabled") and "podMonitor" in err


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    r = render(ALL_ON)
    got = rules(r)
    assert [a["alert"] for a in got] == ALERTS
    for alert in got:
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"/docs/runbooks/{alert['alert']}.md")
        page = ROOT / "docs" / "runbooks" / f"{alert['alert']}.md"
        assert page.is_file(), f"{alert['alert']} links {url}, but {page} is missing"
        text = page.read_text()
        assert text.startswith(f"# {alert['alert']}") and "## What to do" in text


def test_alert_thresholds_and_labels_are_values(everything: Render) -> None:
    by_name = {a["alert"]: a for a in rules(everything)}
    assert "ChromaAuthFailureSpike" not in by_name
    assert by_name["ChromaHighErrorRate"]["expr"].endswith("> 0.01")
    assert "> 176400" in by_name["ChromaBackupTooOld"]["expr"]  # 49 hours
    assert all(a["labels"]["team"] == "search" for a in by_name.values())
    t = {
        "downForMinutes": 2,
        "p99LatencySeconds": 0.75,
        "volumeUsedRatio": 0.7,
        "volumeFullInHours": 12,
        "certificateExpiryDays": 30,
        "authFailuresPerSecond": 3,
        "unpersistedRecords": 777,
    }
    r = render({"metrics": {"prometheusRule": {"enabled": True, "thresholds": t}}})
    by_name = {a["alert"]: a for a in rules(r)}
    assert by_name["ChromaDown"]["for"] == "2m"
    assert by_name["ChromaHighLatency"]["expr"].endswith("> 0.75")
    assert by_name["ChromaVolumeAlmostFull"]["expr"].endswith("> 0.7")
    assert "43200) < 0" in by_name["ChromaVolumeFillingUp"]["expr"]
    assert by_name["ChromaCertificateExpiring"]["expr"].endswith("< 2.592e+06") or by_name[
        "ChromaCertificateExpiring"
    ]["expr"].endswith("< 2592000")
    assert by_name["ChromaAuthFailureSpike"]["expr"].endswith("> 3")
    assert by_name["ChromaWriteLogBacklog"]["expr"].endswith("> 777")


def test_bad_threshold_names_the_value() -> None:
    err = render_error({"metrics": {"prometheusRule": {"thresholds": {"errorRatio": 5}}}})
    assert names_key(err, "metrics.prometheusRule.thresholds.errorRatio")
    err = render_error({"metrics": {"prometheusRule": {"disabled": ["NoSuchAlert"]}}})
    assert names_key(err, "metrics.prometheusRule.disabled")


def test_dashboard_config_map_for_the_grafana_sidecar(everything: Render) -> None:
    cm = everything.get("ConfigMap", "chroma-chromadb-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Databases"
    assert cm["metadata"]["namespace"] == "monitoring"
    shipped = json.loads((CHART_DIR / "files" / "dashboard.json").read_text())
    assert json.loads(cm["data"]["chromadb.json"]) == shipped
    assert shipped["uid"] and shipped["panels"]


def test_open_telemetry_is_wired_into_chromas_config(everything: Render) -> None:
    otel = everything.server_config()["open_telemetry"]
    assert otel == {
        "endpoint": "http://otel-collector.monitoring:4317",
        "service_name": "chroma-everything",
        "filters": [{"crate_name": "chroma_frontend", "filter_level": "debug"}],
    }
    assert "open_telemetry" not in render().server_config()


def test_open_telemetry_needs_an_endpoint() -> None:
    err = render_error({"openTelemetry": {"enabled": True}})
    assert "openTelemetry.endpoint" in err and "openTelemetry.collector.enabled" in err
    err = render_error({"openTelemetry": {"filters": [{"crate_name": "x", "filter_level": "loud"}]}})
    assert names_key(err, "openTelemetry.filters")


def collector_render(**collector: Any) -> Render:
    return render({"openTelemetry": {"enabled": True, "collector": {"enabled": True, **collector}}})


def test_collector_sidecar_receives_chromas_otlp_and_is_scraped() -> None:
    r = collector_render(metricsPort=9999)
    assert r.server_config()["open_telemetry"]["endpoint"] == "http://127.0.0.1:4317"
    container = r.container("otel-collector")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["ports"] == [{"name": "otel-metrics", "containerPort": 9999, "protocol": "TCP"}]
    svc = r.get("Service", "chroma-chromadb-metrics")
    assert {"name": "otel-metrics", "port": 9999, "targetPort": "otel-metrics", "protocol": "TCP"} in svc[
        "spec"
    ]["ports"]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    scraped = render(
        {
            "openTelemetry": {"enabled": True, "collector": {"enabled": True}},
            "networkPolicy": {"metricsFrom": monitoring},
        }
    )
    rules = scraped.get("NetworkPolicy")["spec"]["ingress"]
    assert {
        "from": monitoring,
        "ports": [{"port": "metrics", "protocol": "TCP"}, {"port": "otel-metrics", "protocol": "TCP"}],
    } in rules
    annotations = r.statefulset["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/otel-collector" in annotations
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes[next(iter(mounts))]["configMap"]["name"] == "chroma-chromadb-otel-collector"


def collector_config(r: Render) -> dict[str, Any]:
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-otel-collector")["data"]["config.yaml"])


@pytest.mark.parametrize("traces", ["", "tempo.monitoring:4317"])
def test_collector_config_is_a_complete_pipeline(traces: str) -> None:
    r = collector_render(tracesEndpoint=traces, metricsPort=8890)
    cfg = collector_config(r)
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:4317"
    assert cfg["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8890"
    pipelines = cfg["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces"}
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline[kind]:
                assert name in cfg[kind], f"pipeline uses undefined {kind[:-1]} {name}"
    used = {n for p in pipelines.values() for kind in ("receivers", "exporters") for n in p[kind]}
    assert used == set(cfg["receivers"]) | set(cfg["exporters"]), "every defined component is used"
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    if traces:
        assert pipelines["traces"]["exporters"] == ["otlp"]
        assert cfg["exporters"]["otlp"]["endpoint"] == traces
    else:
        assert pipelines["traces"]["exporters"] == ["debug"]
    for ext in cfg["service"]["extensions"]:
        assert ext in cfg["extensions"]
    probe_port = r.container("otel-collector")["livenessProbe"]["httpGet"]["port"]
    assert cfg["extensions"]["health_check"]["endpoint"].endswith(f":{probe_port}")


def test_collector_stays_off_for_legacy_chroma() -> None:
    r = render(
        {
            "chromadb": {"apiVersion": "0.6.3"},
            "openTelemetry": {"enabled": True, "collector": {"enabled": True}},
        }
    )
    assert not r.has("ConfigMap", "chroma-chromadb-otel-collector")
    assert "otel-collector" not in [c["name"] for c in r.pod_spec["containers"]]


def test_gateway_reads_the_metrics_settings(everything: Render) -> None:
    text = everything.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"]
    settings = parse_config(yaml.safe_load(text))
    assert settings.gateway.metrics.database_series == 50
    assert settings.gateway.metrics.collection_series == 100
    assert settings.gateway.metrics.internals_interval_s == 15
    assert settings.gateway.metrics_port == 9464


def test_network_policy_lets_only_the_listed_sources_scrape(everything: Render) -> None:
    ingress = everything.get("NetworkPolicy")["spec"]["ingress"]
    metrics_rule = next(rule for rule in ingress if {"port": "metrics", "protocol": "TCP"} in rule["ports"])
    assert metrics_rule["from"] == everything_values()["networkPolicy"]["metricsFrom"]
    assert all(p["port"] != "metrics" for p in ingress[0]["ports"])


def test_collector_sidecar_passes_checkov(tmp_path: Path) -> None:
    """The collector stays out of ci/ (the pod runner cannot run it), so it is scanned here."""
    from tests.chart.test_checkov import failures, scan

    report = scan(collector_render(tracesEndpoint="tempo:4317"), tmp_path / "otel")
    assert report["summary"]["passed"] > 100
    assert failures(report) == []
