"""The highAvailability block: several Chroma pods, one primary on a Lease, standbys following it."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
import yaml

from chromactl.config import parse_config
from tests.chart.fake_kube import FakeCluster, helm_config
from tests.chart.helm import (
    NAMESPACE,
    RELEASE,
    ROOT,
    SERVER_SELECTOR,
    Render,
    chart,
    names_key,
    render,
    render_error,
)

FULL = "chroma-chromadb"
ROLE = "chromactl.io/role"
HA: dict[str, Any] = {"highAvailability": {"enabled": True}}


def ha(**values: Any) -> dict[str, Any]:
    """Values with HA on; ``values`` go into highAvailability, ``others`` beside it."""
    others = values.pop("others", {})
    return {"highAvailability": {"enabled": True, **values}, **others}


@pytest.fixture(scope="module")
def on() -> Render:
    return render(HA)


def config(r: Render) -> dict[str, Any]:
    return yaml.safe_load(r.get("ConfigMap", f"{FULL}-chromactl")["data"]["chromactl.yaml"])


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def init_containers(r: Render) -> list[dict[str, Any]]:
    return list(r.pod_spec.get("initContainers", []))


# ----------------------------------------------------------------------------- off


def test_off_renders_none_of_it(default: Render) -> None:
    assert default.statefulset["spec"]["replicas"] == 1
    for kind, name in [
        ("Service", f"{FULL}-rw"),
        ("Service", f"{FULL}-ro"),
        ("Role", None),
        ("RoleBinding", None),
        ("Secret", f"{FULL}-ha"),
        ("PodDisruptionBudget", None),
    ]:
        assert not default.has(kind, name), (kind, name)
    assert ROLE not in default.get("Service", FULL)["spec"]["selector"]
    assert "ha" not in config(default)
    assert "workers" not in config(default)["gateway"]
    assert default.pod_spec["automountServiceAccountToken"] is False
    assert "affinity" not in default.pod_spec and "topologySpreadConstraints" not in default.pod_spec
    assert "ha-init" not in [c["name"] for c in init_containers(default)]
    assert "POD_NAME" not in default.env("gateway")
    assert "lifecycle" not in default.container("gateway")
    assert "ha-token" not in mounts(default.container("gateway"))
    credentials = config(default)["gateway"]["auth"]["token"]["credentials"]
    assert [c["name"] for c in credentials] == ["admin"]
    assert "High availability" not in default.notes


# ---------------------------------------------------------------------- the pods


def test_replicas_follow_high_availability(on: Render) -> None:
    assert on.statefulset["spec"]["replicas"] == 2
    assert render(ha(replicas=3)).statefulset["spec"]["replicas"] == 3
    # replicaCount 0 still stops every pod.
    assert render(ha(others={"replicaCount": 0})).statefulset["spec"]["replicas"] == 0


def test_pod_template_leaves_the_role_label_to_the_pods(on: Render) -> None:
    labels = on.statefulset["spec"]["template"]["metadata"]["labels"]
    assert ROLE not in labels
    assert SERVER_SELECTOR.items() <= labels.items()
    # The selector never names the role: a pod changing its role stays the StatefulSet's.
    assert ROLE not in on.statefulset["spec"]["selector"]["matchLabels"]


def test_service_account_token_is_mounted_and_the_account_not_changed(on: Render) -> None:
    assert on.pod_spec["automountServiceAccountToken"] is True
    assert on.pod_spec["serviceAccountName"] == FULL
    assert on.get("ServiceAccount")["automountServiceAccountToken"] is False


def test_gateway_knows_its_pod_name(on: Render) -> None:
    assert on.env("gateway")["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "CHROMACTL_CPU_REQUEST" in on.env("gateway")


def test_a_stopped_primary_hands_over_first(on: Render) -> None:
    hook = on.container("gateway")["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:4] == ["chromactl", "ha", "switchover", "--if-primary"]
    assert hook[4] == "--config=/etc/chromactl/config/chromactl.yaml"


def test_default_anti_affinity_is_preferred_on_hostname(on: Render) -> None:
    anti = on.pod_spec["affinity"]["podAntiAffinity"]
    assert list(anti) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["weight"] == 100
    assert term["podAffinityTerm"] == {
        "labelSelector": {"matchLabels": SERVER_SELECTOR},
        "topologyKey": "kubernetes.io/hostname",
    }


def test_anti_affinity_required_or_none() -> None:
    anti = render(ha(podAntiAffinity="required")).pod_spec["affinity"]["podAntiAffinity"]
    assert anti == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": SERVER_SELECTOR}, "topologyKey": "kubernetes.io/hostname"}
        ]
    }
    assert "affinity" not in render(ha(podAntiAffinity="none")).pod_spec


def test_users_affinity_wins() -> None:
    mine = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert render(ha(others={"affinity": mine})).pod_spec["affinity"] == mine


def test_default_topology_spread_over_zones(on: Render) -> None:
    assert on.pod_spec["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SERVER_SELECTOR},
        }
    ]
    assert "topologySpreadConstraints" not in render(ha(topologySpread=False)).pod_spec


def test_users_topology_spread_wins() -> None:
    mine = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    (got,) = render(ha(others={"topologySpreadConstraints": [mine]})).pod_spec["topologySpreadConstraints"]
    assert got == {**mine, "labelSelector": {"matchLabels": SERVER_SELECTOR}}


def test_ha_init_runs_last_before_chroma_like_the_gateway(on: Render) -> None:
    names = [c["name"] for c in init_containers(on)]
    assert names[-1] == "ha-init"
    assert names == ["migrate", "ha-init"]
    init = init_containers(on)[-1]
    gateway = on.container("gateway")
    assert init["image"] == gateway["image"]
    assert init["command"] == ["chromactl", "ha", "init", "--config=/etc/chromactl/config/chromactl.yaml"]
    assert init["securityContext"] == gateway["securityContext"]
    got = mounts(init)
    assert got["data"] == "/data" and got["chromactl-config"] == "/etc/chromactl/config"
    assert got["ha-token"] == "/etc/chromactl/ha"
    assert {m["name"]: m.get("readOnly", False) for m in init["volumeMounts"]}["ha-token"] is True
    assert {e["name"] for e in init["env"]} == {"POD_NAME"}


def test_ha_init_follows_the_restore() -> None:
    r = render(
        ha(others={"backup": {"target": "s3://b/p", "restore": {"enabled": True, "from": "s3://b/p"}}})
    )
    assert [c["name"] for c in init_containers(r)] == ["restore", "migrate", "ha-init"]


# --------------------------------------------------------------------- the config


def test_config_ha_section_parses_and_has_the_values(on: Render) -> None:
    data = config(on)
    assert data["ha"] == {
        "enabled": True,
        "lease_name": f"{FULL}-leader",
        "peer_url": f"http://{{pod}}.{FULL}-headless:8000",
        "token_file": "/etc/chromactl/ha/token",
        "state_dir": "/data/.chromactl-ha",
        "lease_duration_s": 15,
        "renew_deadline_s": 10,
        "retry_period_s": 2,
        "max_lag_s": 10,
        "maximum_lag_on_failover": 1000,
        "synchronous": False,
        "synchronous_timeout_s": 10,
        "retained_log_bytes": 268435456,
    }
    settings = parse_config(data)
    assert settings.ha.enabled and settings.ha.lease_name == f"{FULL}-leader"
    assert str(settings.ha.token_file) == "/etc/chromactl/ha/token"
    assert settings.gateway.workers == 1


def test_config_follows_every_value() -> None:
    r = render(
        ha(
            replicas=3,
            maxLagSeconds=30,
            maximumLagOnFailover=0,
            synchronous=True,
            synchronousTimeoutSeconds=5,
            retainedLogBytes=1 << 30,
            lease={"durationSeconds": 30, "renewDeadlineSeconds": 20, "retryPeriodSeconds": 4},
            others={"chromadb": {"persistDirectory": "/var/lib/chroma", "serverHttpPort": 8080}},
        )
    )
    settings = parse_config(config(r)).ha
    assert (settings.lease_duration_s, settings.renew_deadline_s, settings.retry_period_s) == (30, 20, 4)
    assert (settings.max_lag_s, settings.maximum_lag_on_failover) == (30, 0)
    assert settings.synchronous is True and settings.synchronous_timeout_s == 5
    assert settings.retained_log_bytes == 1 << 30
    assert str(settings.state_dir) == "/var/lib/chroma/.chromactl-ha"
    assert settings.peer_url == f"http://{{pod}}.{FULL}-headless:8080"


def test_peers_over_https_with_the_gateways_ca() -> None:
    r = render(ha(others={"chromadb": {"tls": {"enabled": True}}}))
    settings = parse_config(config(r)).ha
    assert settings.peer_url == f"https://{{pod}}.{FULL}-headless:8000"
    assert str(settings.peer_ca_file) == "/etc/chromactl/tls/ca.crt"
    # The TLS Secret mounted there holds the CA, in the gateway and in ha-init.
    assert mounts(r.container("gateway"))["tls"] == "/etc/chromactl/tls"
    assert mounts(init_containers(r)[-1])["tls"] == "/etc/chromactl/tls"
    # Each pod's certificate names it under the headless Service.
    certificate = render(
        ha(
            others={
                "chromadb": {
                    "tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}
                }
            }
        )
    ).get("Certificate")
    for i in (0, 1):
        assert f"{FULL}-{i}.{FULL}-headless.vectors.svc" in certificate["spec"]["dnsNames"]
    assert f"{FULL}-2.{FULL}-headless.vectors.svc" not in certificate["spec"]["dnsNames"]
    for service in (f"{FULL}-rw", f"{FULL}-ro"):
        assert f"{service}.vectors.svc.cluster.local" in certificate["spec"]["dnsNames"]
    assert "peer_ca_file" not in config(render(HA))["ha"]


def test_token_secret_mounted_and_listed_as_a_credential(on: Render) -> None:
    secret = on.get("Secret", f"{FULL}-ha")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    volume = next(v for v in on.pod_spec["volumes"] if v["name"] == "ha-token")
    assert volume["secret"]["secretName"] == f"{FULL}-ha"
    gateway = on.container("gateway")
    assert mounts(gateway)["ha-token"] == "/etc/chromactl/ha"
    assert {m["name"]: m.get("readOnly", False) for m in gateway["volumeMounts"]}["ha-token"] is True
    assert "ha-token" not in mounts(on.container("chroma"))
    credentials = config(on)["gateway"]["auth"]["token"]["credentials"]
    assert {"name": "ha-replication", "role": "admin", "token_file": "/etc/chromactl/ha/token"} in credentials
    assert [c["name"] for c in credentials] == ["admin", "ha-replication"]


def test_token_kept_across_upgrades() -> None:
    before = render(HA)
    cluster = FakeCluster()
    for obj in before.objects:
        obj["metadata"].setdefault("annotations", {})["meta.helm.sh/release-name"] = RELEASE
        cluster.add(obj, NAMESPACE)
    with helm_config(cluster, NAMESPACE) as helm:
        after = Render(
            helm.render(chart(), HA, name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)
        )
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULL}-ha" in [r.split("?")[0] for r in cluster.requests]
    assert after.get("Secret", f"{FULL}-ha")["data"] == before.get("Secret", f"{FULL}-ha")["data"]
    # Without a live Secret each render makes a new one.
    assert render(HA).get("Secret", f"{FULL}-ha")["data"] != before.get("Secret", f"{FULL}-ha")["data"]


# -------------------------------------------------------------------- Services


def test_services_select_by_role(on: Render) -> None:
    main = on.get("Service", FULL)["spec"]["selector"]
    rw = on.get("Service", f"{FULL}-rw")["spec"]
    ro = on.get("Service", f"{FULL}-ro")["spec"]
    assert main == {**SERVER_SELECTOR, ROLE: "primary"}
    assert rw["selector"] == {**SERVER_SELECTOR, ROLE: "primary"}
    assert ro["selector"] == {**SERVER_SELECTOR, ROLE: "standby"}
    for spec in (rw, ro):
        assert spec["ports"] == on.get("Service", FULL)["spec"]["ports"]
    headless = on.get("Service", f"{FULL}-headless")["spec"]
    assert headless["publishNotReadyAddresses"] is True
    assert ROLE not in headless["selector"]


# ------------------------------------------------------------------------- RBAC


def test_role_grants_exactly_the_lease_and_the_releases_pods(on: Render) -> None:
    role = on.get("Role")
    assert role["metadata"]["name"] == f"{FULL}-ha"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [f"{FULL}-leader"],
            "verbs": ["get", "update"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": [f"{FULL}-0", f"{FULL}-1"],
            "verbs": ["get", "patch", "delete"],
        },
    ]
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, [])


def test_role_names_every_pod_even_when_stopped() -> None:
    rules = render(ha(replicas=3)).get("Role")["rules"]
    assert rules[2]["resourceNames"] == [f"{FULL}-0", f"{FULL}-1", f"{FULL}-2"]
    # replicaCount 0 stops the pods; the Role must not lose its resourceNames (empty = every pod).
    rules = render(ha(others={"replicaCount": 0})).get("Role")["rules"]
    assert rules[2]["resourceNames"] == [f"{FULL}-0", f"{FULL}-1"]


def test_role_bound_to_the_pods_service_account() -> None:
    binding = render(ha(others={"serviceAccount": {"create": False, "name": "chroma-sa"}})).get("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{FULL}-ha",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chroma-sa", "namespace": "vectors"}]
    assert render(HA).get("RoleBinding")["subjects"][0]["name"] == FULL


# -------------------------------------------------------- PDB, NetworkPolicy, NOTES


def test_pdb_one_pod_at_a_time(on: Render) -> None:
    pdb = on.get("PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": SERVER_SELECTOR}}
    enabled = render(ha(others={"podDisruptionBudget": {"enabled": True}}))
    assert enabled.get("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_network_policy_lets_the_peers_in() -> None:
    r = render(
        ha(others={"networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]}})
    )
    ingress = r.get("NetworkPolicy")["spec"]["ingress"]
    assert {
        "from": [{"podSelector": {"matchLabels": SERVER_SELECTOR}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    } in ingress
    assert "Egress" not in r.get("NetworkPolicy")["spec"]["policyTypes"]


def test_network_policy_egress_to_peers_and_the_api_server() -> None:
    r = render(ha(others={"networkPolicy": {"egress": {"enabled": True}}}))
    egress = r.get("NetworkPolicy")["spec"]["egress"]
    peers = {
        "to": [{"podSelector": {"matchLabels": SERVER_SELECTOR}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    assert peers in egress
    api_ports = [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]
    assert {"ports": api_ports} in egress  # no `to`: any address on those ports
    api = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    r = render(ha(others={"networkPolicy": {"egress": {"enabled": True, "kubernetesApiTo": api}}}))
    assert {"to": api, "ports": api_ports} in r.get("NetworkPolicy")["spec"]["egress"]
    # Without HA the API server stays unreachable.
    plain = render({"networkPolicy": {"egress": {"enabled": True, "kubernetesApiTo": api}}})
    assert not any(
        p.get("port") == 6443 for rule in plain.get("NetworkPolicy")["spec"]["egress"] for p in rule["ports"]
    )


def test_notes_name_the_services_and_the_status_command(on: Render) -> None:
    notes = on.notes
    assert f"{FULL}-rw" in notes and f"{FULL}-ro" in notes
    assert "chromactl ha status --config=/etc/chromactl/config/chromactl.yaml" in notes
    assert f"data-{FULL}-0, data-{FULL}-1" in notes


# ------------------------------------------------------------------------ alerts


def alerts(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values = copy.deepcopy(values)
    values.setdefault("metrics", {}).setdefault("prometheusRule", {})["enabled"] = True
    rules = render(values).get("PrometheusRule")["spec"]["groups"][0]["rules"]
    return {r["alert"]: r for r in rules}


def test_replication_alerts_only_with_ha() -> None:
    names = {"ChromaNoStandbyInSync", "ChromaReplicationLagHigh", "ChromaFailover"}
    assert not names & set(alerts({}))
    got = alerts(ha(maxLagSeconds=30))
    sel = 'job="chroma-chromadb-metrics", namespace="vectors"'
    assert got["ChromaNoStandbyInSync"]["expr"] == f"max(chromactl_ha_standbys_in_sync{{{sel}}}) < 1"
    assert got["ChromaNoStandbyInSync"]["for"] == "5m"
    assert got["ChromaReplicationLagHigh"]["expr"] == f"max by (pod) (chromactl_ha_lag_seconds{{{sel}}}) > 30"
    assert got["ChromaReplicationLagHigh"]["for"] == "2m"
    assert got["ChromaFailover"]["expr"] == f"increase(chromactl_ha_failovers_total{{{sel}}}[10m]) > 0"
    disabled = alerts(ha(others={"metrics": {"prometheusRule": {"disabled": ["ChromaFailover"]}}}))
    assert "ChromaFailover" not in disabled and "ChromaNoStandbyInSync" in disabled
    for alert in got.values():
        page = ROOT / "docs" / "runbooks" / f"{alert['alert']}.md"
        assert alert["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{alert['alert']}.md")
        assert page.is_file() and "## What to do" in page.read_text()


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("values", "key", "why"),
    [
        ({"gateway": {"enabled": False}}, "gateway.enabled", "leader election"),
        ({"chromadb": {"isPersistent": False}}, "chromadb.isPersistent", "own volume"),
        ({"chromadb": {"apiVersion": "0.6.3"}}, "chromadb.apiVersion", "Chroma 1.x"),
        (
            {"gateway": {"workers": 2}},
            "gateway.workers",
            "replication log is written, in order, by one process",
        ),
        ({"serviceAccount": {"create": False}}, "serviceAccount", "default"),
        (
            {"architecture": "gateway", "scaleOut": {"chromaUrl": "http://chroma:8000"}},
            "architecture",
            "no Chroma",
        ),
    ],
    ids=["gateway-off", "not-persistent", "legacy", "workers", "default-service-account", "gateway-tier"],
)
def test_refused_combinations_say_what_to_change(values: dict[str, Any], key: str, why: str) -> None:
    err = render_error({**HA, **values})
    assert "highAvailability.enabled" in err and names_key(err, key) and why in err, err


def test_autoscaler_is_refused() -> None:
    # The HPA exists only with architecture: gateway, which HA refuses; scaleOut.autoscaling stays on
    # by default there, so the error names the architecture.
    err = render_error(
        {
            **HA,
            "architecture": "gateway",
            "scaleOut": {"chromaUrl": "http://chroma:8000", "autoscaling": {"enabled": True}},
        }
    )
    assert "architecture is gateway" in err


@pytest.mark.parametrize("replicas", [1, 4, 0])
def test_replicas_two_or_three(replicas: int) -> None:
    err = render_error(ha(replicas=replicas))
    assert f"highAvailability.replicas is {replicas}" in err and "2" in err and "3" in err


def test_one_worker_is_accepted() -> None:
    assert parse_config(config(render(ha(others={"gateway": {"workers": 1}})))).gateway.workers == 1


@pytest.mark.parametrize(
    ("lease", "message"),
    [
        (
            {"durationSeconds": 12, "renewDeadlineSeconds": 10},
            "highAvailability.lease.durationSeconds (12) must exceed renewDeadlineSeconds (10) plus 2",
        ),
        (
            {"durationSeconds": 15, "renewDeadlineSeconds": 15},
            "highAvailability.lease.durationSeconds (15) must exceed",
        ),
        (
            {"renewDeadlineSeconds": 2.4, "retryPeriodSeconds": 2},
            "highAvailability.lease.renewDeadlineSeconds (2.4) must exceed 1.2 x retryPeriodSeconds (2)",
        ),
        (
            {"renewDeadlineSeconds": 10, "retryPeriodSeconds": 9},
            "renewDeadlineSeconds (10) must exceed 1.2 x retryPeriodSeconds (9)",
        ),
    ],
)
def test_lease_timings_follow_the_electors_rule(lease: dict[str, float], message: str) -> None:
    assert message in render_error(ha(lease=lease))


def test_lease_timings_at_the_edge_pass() -> None:
    # 10 + 2 < 12.5 and 10 > 1.2 x 8.
    r = render(ha(lease={"durationSeconds": 12.5, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 8}))
    assert parse_config(config(r)).ha.lease_duration_s == 12.5
