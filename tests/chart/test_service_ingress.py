"""The Service clients use and the optional Ingress."""

from __future__ import annotations

from tests.chart.helm import RELEASE, SERVER_SELECTOR, render


def test_service_selects_the_pod_on_the_http_port(default) -> None:
    svc = default.get("Service", "chroma-chromadb")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == SERVER_SELECTOR
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = default.statefulset["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_headless_service_governs_the_statefulset(default) -> None:
    headless = default.get("Service", "chroma-chromadb-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert default.statefulset["spec"]["serviceName"] == "chroma-chromadb-headless"


def test_statefulset_selector_is_the_one_every_chromadb_chart_used(default) -> None:
    """name and instance, as in the amikos chart: a StatefulSet replaced with
    `--cascade=orphan` adopts the running pod (docs/migrate-from-amikos-chart.md)."""
    selector = default.statefulset["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "chromadb", "app.kubernetes.io/instance": RELEASE}
    assert selector.items() <= default.statefulset["spec"]["template"]["metadata"]["labels"].items()


def test_service_type_port_node_port_annotations(everything) -> None:
    svc = everything.get("Service", "chroma-chromadb")
    assert svc["spec"]["type"] == "LoadBalancer"
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 80 and port["nodePort"] == 30800 and port["targetPort"] == "http"
    assert svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    test_pod = everything.get("Pod", "chroma-chromadb-test-heartbeat")
    assert {"name": "CHROMA_URL", "value": "https://chroma-chromadb:80"} in test_pod["spec"]["containers"][0][
        "env"
    ]


def test_node_port_ignored_for_cluster_ip() -> None:
    svc = render({"service": {"nodePort": 30001}}).get("Service", "chroma-chromadb")
    assert "nodePort" not in svc["spec"]["ports"][0]


def test_ingress(everything) -> None:
    assert not render().has("Ingress")
    ing = everything.get("Ingress", "chroma-chromadb")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "chroma-tls", "hosts": ["chroma.example.com"]}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "chroma.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": "chroma-chromadb", "port": {"name": "http"}}}
    assert "https://chroma.example.com" in everything.notes


def test_network_policy_opens_only_the_chroma_port() -> None:
    policy = render().get("NetworkPolicy", "chroma-chromadb")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "chromadb",
        "app.kubernetes.io/instance": "chroma",
    }
    # The Chroma port only: the metrics port opens to the peers in networkPolicy.metricsFrom.
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]
    limited = render({"networkPolicy": {"ingressFrom": peers}}).get("NetworkPolicy")
    assert limited["spec"]["ingress"][0]["from"] == peers
    assert not render({"networkPolicy": {"enabled": False}}).has("NetworkPolicy")


def test_service_does_not_select_test_pods(default) -> None:
    selector = default.get("Service", "chroma-chromadb")["spec"]["selector"]
    for check in ("heartbeat", "collection"):
        labels = default.get("Pod", f"chroma-chromadb-test-{check}")["metadata"]["labels"]
        assert not selector.items() <= labels.items()
