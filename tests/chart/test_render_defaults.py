"""What a default install renders: the objects, their names and how the pod runs Chroma."""

from __future__ import annotations

import yaml

from tests.chart.helm import render


def test_default_objects_and_names() -> None:
    assert render().kinds() == [
        ("ConfigMap", "chroma-chromadb-chromactl"),
        ("ConfigMap", "chroma-chromadb-config"),
        ("ConfigMap", "chroma-chromadb-token-auth-config"),
        ("NetworkPolicy", "chroma-chromadb"),
        ("Pod", "chroma-chromadb-test-collection"),
        ("Pod", "chroma-chromadb-test-heartbeat"),
        ("Secret", "chroma-chromadb-console"),
        ("Secret", "chromadb-auth"),
        ("Service", "chroma-chromadb"),
        ("Service", "chroma-chromadb-headless"),
        ("Service", "chroma-chromadb-metrics"),
        ("ServiceAccount", "chroma-chromadb"),
        ("StatefulSet", "chroma-chromadb"),
    ]


def test_release_name_containing_chart_name_is_not_doubled() -> None:
    assert render(release="chromadb").statefulset["metadata"]["name"] == "chromadb"
    assert render({"fullnameOverride": "vectors"}).statefulset["metadata"]["name"] == "vectors"


def test_default_runs_chroma_1x_from_its_config_file() -> None:
    r = render()
    chroma = r.container()
    assert chroma["image"] == "ghcr.io/chroma-core/chroma:1.5.9"
    assert chroma["args"] == ["run", "/etc/chroma/config.yaml"]
    assert "command" not in chroma
    mounts = {m["name"]: m for m in chroma["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/chroma"
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "chroma-chromadb-config"
    assert r.server_config() == {
        "port": 8001,
        "listen_address": "127.0.0.1",
        "persist_path": "/data",
        "allow_reset": False,
        "max_payload_size_bytes": 41943040,
    }


def test_probes_use_chroma_health_endpoints_from_inside_the_pod() -> None:
    """Behind the gateway Chroma listens on 127.0.0.1: the kubelet cannot reach it, bash can."""
    chroma = render().container()
    assert "ports" not in chroma
    for probe, path in (
        ("livenessProbe", "heartbeat"),
        ("readinessProbe", "healthcheck"),
        ("startupProbe", "healthcheck"),
    ):
        command = chroma[probe]["exec"]["command"]
        assert command[:2] == ["bash", "-c"]
        assert "/dev/tcp/127.0.0.1/8001" in command[2] and f"GET /api/v2/{path} " in command[2]


def test_probes_use_chroma_health_endpoints_without_gateway() -> None:
    chroma = render({"gateway": {"enabled": False}}).container()
    assert chroma["livenessProbe"]["httpGet"] == {"path": "/api/v2/heartbeat", "port": "http"}
    assert chroma["readinessProbe"]["httpGet"] == {"path": "/api/v2/healthcheck", "port": "http"}
    assert chroma["startupProbe"]["httpGet"] == {"path": "/api/v2/healthcheck", "port": "http"}
    assert chroma["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_probe_can_be_disabled_and_tuned() -> None:
    chroma = render(
        {"livenessProbe": {"enabled": False}, "readinessProbe": {"failureThreshold": 9}}
    ).container()
    assert "livenessProbe" not in chroma
    assert chroma["readinessProbe"]["failureThreshold"] == 9


def test_data_is_kept_on_uninstall_by_default() -> None:
    sts = render().statefulset
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]


def test_claim_template_labels_do_not_change_with_chart_version() -> None:
    """volumeClaimTemplates are immutable: a version label there would break every upgrade."""
    (claim,) = render().statefulset["spec"]["volumeClaimTemplates"]
    assert set(claim["metadata"]["labels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def test_config_change_rolls_the_pod() -> None:
    a = render().statefulset["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = render({"chromadb": {"allowReset": True}}).statefulset["spec"]["template"]["metadata"]["annotations"]
    assert a != b["checksum/config"]


def test_helm_tests_run_smoke_checks_against_the_service() -> None:
    r = render()
    for check in ("heartbeat", "collection"):
        pod = r.get("Pod", f"chroma-chromadb-test-{check}")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["chromactl", "smoke", "--check", check]
        assert {"name": "CHROMA_URL", "value": "http://chroma-chromadb:8000"} in container["env"]
        assert container["image"] == "ghcr.io/chromadb-chart/chromactl:0.2.0"
    assert not render({"tests": {"enabled": False}}).has("Pod")


def test_notes_tell_how_to_connect() -> None:
    notes = render().notes
    assert "http://chroma-chromadb:8000" in notes
    assert "kubectl -n vectors port-forward svc/chroma-chromadb 8000:8000" in notes
    assert "helm test chroma -n vectors" in notes
    assert "kept when you uninstall" in notes


def test_everything_render_is_valid_yaml_per_object(everything) -> None:
    for path, text in everything.templates.items():
        if not path.endswith("NOTES.txt"):
            list(yaml.safe_load_all(text))
