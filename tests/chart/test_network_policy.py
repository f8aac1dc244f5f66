"""networkPolicy: the client port from `ingressFrom`, the metrics port from `metricsFrom` only,
rules other features contribute through the collector in _networkpolicy.tpl, and the optional
egress allow-list (DNS always, the release's own Chroma port, the user's rules)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.chart.helm import render, render_error

APPS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]
MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
HTTP = [{"port": "http", "protocol": "TCP"}]


def policy(values: dict[str, Any]) -> dict[str, Any]:
    return render(values).get("NetworkPolicy")["spec"]


def test_default_opens_the_client_port_only() -> None:
    spec = policy({})
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    assert spec["ingress"] == [{"ports": HTTP}]


def test_metrics_port_only_from_metrics_from() -> None:
    spec = policy({"networkPolicy": {"ingressFrom": APPS, "metricsFrom": MONITORING}})
    tests = {
        "app.kubernetes.io/name": "chromadb",
        "app.kubernetes.io/instance": "chroma",
        "app.kubernetes.io/component": "test",
    }
    assert spec["ingress"] == [
        {"from": APPS, "ports": HTTP},
        {"from": MONITORING, "ports": [{"port": "metrics", "protocol": "TCP"}]},
        # the helm test pods, which ingressFrom does not name (tests/e2e/test_network_policy.py)
        {"from": [{"podSelector": {"matchLabels": tests}}], "ports": HTTP},
    ]
    without_tests = policy({"tests": {"enabled": False}, "networkPolicy": {"ingressFrom": APPS}})
    assert without_tests["ingress"] == [{"from": APPS, "ports": HTTP}]
    # No metrics port without the gateway.
    legacy = policy({"gateway": {"enabled": False}, "networkPolicy": {"metricsFrom": MONITORING}})
    assert legacy["ingress"] == [{"ports": HTTP}]


def test_other_features_add_rules_through_the_collector() -> None:
    spec = policy(
        {"backup": {"enabled": True, "target": "s3://bucket/chroma"}, "networkPolicy": {"ingressFrom": APPS}}
    )
    assert spec["ingress"][0] == {"from": APPS, "ports": HTTP}
    backup = spec["ingress"][-1]
    assert backup["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "backup"


def test_egress_allow_list() -> None:
    s3 = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    spec = policy({"networkPolicy": {"egress": {"enabled": True, "rules": [s3]}}})
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, release, user = spec["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    # helm test and backup pods reach the server's Chroma port, nothing else of the release
    assert release == {
        "to": [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "chromadb",
                        "app.kubernetes.io/instance": "chroma",
                        "app.kubernetes.io/component": "server",
                    }
                }
            }
        ],
        "ports": HTTP,
    }
    assert user == s3
    own_dns = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}}}]
    spec = policy({"networkPolicy": {"egress": {"enabled": True, "dnsTo": own_dns}}})
    assert spec["egress"][0]["to"] == own_dns and len(spec["egress"]) == 2


@pytest.mark.parametrize("version", ["1.29.0", "1.34.0"])
def test_everything_on_is_a_valid_network_policy(version: str) -> None:
    r = render(
        {
            "backup": {"enabled": True, "target": "s3://bucket/chroma"},
            "networkPolicy": {
                "ingressFrom": APPS,
                "metricsFrom": MONITORING,
                "egress": {"enabled": True, "rules": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
            },
        }
    )
    kubernetes_validate.validate(r.get("NetworkPolicy"), version, strict=True)


def test_bad_egress_rule_names_the_key() -> None:
    message = render_error({"networkPolicy": {"egress": {"enabled": True, "rules": [{"peers": []}]}}})
    assert "egress" in message and "peers" in message
