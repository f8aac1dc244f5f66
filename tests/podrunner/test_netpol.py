"""The pod runner's NetworkPolicy semantics (tests/podrunner/netpol.py), case by case, as
the Kubernetes documentation states them. The packets themselves: tests/e2e/test_network_policy.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.podrunner.netpol import Allow, Cluster, Endpoint, policy_types, ruleset, selects

SERVER = Endpoint.of(
    "server",
    "db",
    {"app": "chroma"},
    "10.0.0.2",
    {
        "containers": [
            {
                "ports": [
                    {"name": "http", "containerPort": 8000},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                ]
            }
        ]
    },
    {8000: (80,)},
)
APP = Endpoint.of("app", "apps", {"role": "client"}, "10.0.0.3", {"containers": [{}]})
OTHER = Endpoint.of("other", "apps", {"role": "batch"}, "10.0.0.4", {"containers": [{}]})
SAME_NS = Endpoint.of("neighbour", "db", {"role": "client"}, "10.0.0.5", {"containers": [{}]})
NAMESPACES = {"db": {}, "apps": {"team": "a"}}


def policy(spec: dict[str, Any], namespace: str = "db") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "chroma"}}, **spec},
    }


def ingress(*policies: dict[str, Any]) -> list[Allow] | None:
    return Cluster([SERVER, APP, OTHER, SAME_NS], NAMESPACES, policies).allowed(SERVER, "Ingress")


def sources(allows: list[Allow] | None) -> set[tuple[str, str | None, tuple[int, int] | None]]:
    assert allows is not None
    return {(net, a.protocol, a.ports) for a in allows for net in a.nets}


def test_a_pod_no_policy_selects_is_not_isolated() -> None:
    assert ingress() is None
    assert ingress(policy({}, namespace="apps")) is None  # a policy of another namespace
    assert (
        ingress(
            {
                "metadata": {"name": "p", "namespace": "db"},
                "spec": {"podSelector": {"matchLabels": {"app": "other"}}},
            }
        )
        is None
    )


def test_selected_with_no_rules_denies_everything() -> None:
    assert ingress(policy({"policyTypes": ["Ingress"]})) == []


def test_policy_types_default() -> None:
    assert policy_types(policy({})) == ["Ingress"]
    assert policy_types(policy({"egress": [{}]})) == ["Ingress", "Egress"]
    egress_only = policy({"policyTypes": ["Egress"]})
    assert ingress(egress_only) is None


def test_pod_selector_is_in_the_policy_namespace() -> None:
    clients = {"podSelector": {"matchLabels": {"role": "client"}}}
    got = ingress(policy({"ingress": [{"from": [clients]}]}))
    assert sources(got) == {("10.0.0.5/32", None, None)}  # not the client pod of namespace apps


def test_namespace_selector_and_both_together() -> None:
    by_ns = ingress(policy({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}))
    assert sources(by_ns) == {("10.0.0.3/32", None, None), ("10.0.0.4/32", None, None)}
    both = ingress(
        policy(
            {
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"team": "a"}},
                                "podSelector": {"matchLabels": {"role": "client"}},
                            }
                        ]
                    }
                ]
            }
        )
    )
    assert sources(both) == {("10.0.0.3/32", None, None)}
    by_name = ingress(
        policy(
            {
                "ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}]}
                ]
            }
        )
    )
    assert sources(by_name) == {("10.0.0.2/32", None, None), ("10.0.0.5/32", None, None)}


def test_ip_block_with_except() -> None:
    block = {"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/25"]}}
    got = ingress(policy({"ingress": [{"from": [block]}]}))
    assert sources(got) == {("10.0.0.128/25", None, None)}


def test_ports_by_number_name_protocol_and_range() -> None:
    got = ingress(
        policy(
            {
                "ingress": [
                    {
                        "ports": [
                            {"port": "http"},
                            {"port": "dns", "protocol": "UDP"},
                            {"port": "dns"},  # TCP dns: no such port
                            {"port": 9000, "endPort": 9010},
                            {"protocol": "UDP"},
                        ]
                    }
                ]
            }
        )
    )
    assert sources(got) == {
        ("0.0.0.0/0", "TCP", (8000, 8000)),
        ("0.0.0.0/0", "TCP", (80, 80)),  # the Service port too
        ("0.0.0.0/0", "UDP", (53, 53)),
        ("0.0.0.0/0", "TCP", (9000, 9010)),
        ("0.0.0.0/0", "UDP", None),
    }


def test_policies_and_rules_add_up() -> None:
    one = policy({"ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    two = policy(
        {
            "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}], "ports": [{"port": 8000}]}
            ]
        }
    )
    assert sources(ingress(one, two)) == {
        ("10.0.0.5/32", None, None),
        ("10.0.0.3/32", "TCP", (8000, 8000)),
        ("10.0.0.3/32", "TCP", (80, 80)),
        ("10.0.0.4/32", "TCP", (8000, 8000)),
        ("10.0.0.4/32", "TCP", (80, 80)),
    }


def test_egress_named_ports_are_the_destination_pods() -> None:
    client_policy = {
        "metadata": {"name": "c", "namespace": "apps"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "chroma"}}}],
                    "ports": [{"port": "http"}],
                },
                {"to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}], "ports": [{"port": "http"}]},
            ],
        },
    }
    cluster = Cluster([SERVER, APP], NAMESPACES, [client_policy])
    assert sources(cluster.allowed(APP, "Egress")) == {
        ("10.0.0.2/32", "TCP", (8000, 8000)),
        ("10.0.0.2/32", "TCP", (80, 80)),
    }


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        ({}, {"any": "thing"}, True),
    ],
)
def test_label_selectors(selector: dict[str, Any], labels: dict[str, str], want: bool) -> None:
    assert selects(selector, labels) is want


def test_the_ruleset_isolates_only_what_policies_select() -> None:
    cluster = Cluster([SERVER, APP], NAMESPACES, [policy({"policyTypes": ["Ingress"]})])
    server, app = ruleset(cluster, SERVER, "10.0.0.1"), ruleset(cluster, APP, "10.0.0.1")
    input_chain, output_chain = server.split("chain output")
    assert "ct state established,related accept" in input_chain and input_chain.rstrip().endswith("drop\n  }")
    assert "drop" not in output_chain  # not isolated for egress
    assert "ip saddr 10.0.0.1 accept" in server  # the node: probes
    assert "drop" not in app
