"""The gateway in front of Chroma: topology, auth Secret, token header and the config it reads."""

from __future__ import annotations

import base64

import pytest
import yaml

from chromactl.config import LimitsSettings, parse_config
from tests.chart.helm import Render, everything_values, render, render_error


def chromactl_config(r: Render) -> dict:
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"chromadb": {"auth": {"type": "basic"}}},
        {"chromadb": {"auth": {"enabled": False}}},
        {
            "chromadb": {
                "auth": {"credentials": [{"name": "dash", "role": "reader", "secretName": "dash-token"}]}
            }
        },
        "everything",
    ],
)
def test_rendered_config_is_what_chromactl_reads(values) -> None:
    r = render(everything_values() if values == "everything" else values)
    settings = parse_config(chromactl_config(r), source="rendered chromactl.yaml")
    assert settings.gateway.port == r.container("gateway")["ports"][0]["containerPort"]
    assert settings.chroma.url == f"http://127.0.0.1:{r.server_config()['port']}"
    assert r.server_config()["listen_address"] == "127.0.0.1"


def test_gateway_takes_the_client_port_and_chroma_hides_behind_it() -> None:
    r = render()
    gateway = r.container("gateway")
    assert gateway["command"] == ["chromactl", "gateway", "--config", "/etc/chromactl/config/chromactl.yaml"]
    assert [p["name"] for p in gateway["ports"]] == ["http", "metrics"]
    assert gateway["readinessProbe"]["httpGet"] == {
        "path": "/api/v2/healthcheck",
        "port": "http",
        "scheme": "HTTP",
    }
    assert gateway["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert r.get("Service", "chroma-chromadb")["spec"]["ports"][0]["targetPort"] == "http"


def test_gateway_off_serves_chroma_directly() -> None:
    r = render({"gateway": {"enabled": False}})
    assert [c["name"] for c in r.pod_spec["containers"]] == ["chroma"]
    assert r.server_config()["listen_address"] == "0.0.0.0"
    assert not r.has("Secret") and not r.has("ConfigMap", "chroma-chromadb-chromactl")


def test_generated_token_secret_is_kept_and_mounted() -> None:
    r = render()
    secret = r.get("Secret", "chromadb-auth")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["token"])) == 40
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "chromadb-auth"
    (admin,) = chromactl_config(r)["gateway"]["auth"]["token"]["credentials"]
    assert admin == {"name": "admin", "role": "admin", "token_file": "/etc/chromactl/auth/token"}


def test_existing_secret_is_mounted_directly_without_a_copy() -> None:
    r = render({"chromadb": {"auth": {"existingSecret": "mine"}}})
    # No copy of the credential; the one Secret is the console's session key.
    assert [name for kind, name in r.kinds() if kind == "Secret"] == ["chroma-chromadb-console"]
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "mine"
    test_pod = r.get("Pod", "chroma-chromadb-test-collection")
    assert test_pod["spec"]["volumes"][0]["secret"]["secretName"] == "mine"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("AUTHORIZATION", "Authorization"),
        ("X-CHROMA-TOKEN", "X-Chroma-Token"),
        ("X_CHROMA_TOKEN", "X-Chroma-Token"),
    ],
)
def test_token_header_config_map(header: str, expected: str) -> None:
    r = render({"chromadb": {"auth": {"token": {"tokenHeader": header}}}})
    cm = r.get("ConfigMap", "chroma-chromadb-token-auth-config")
    assert cm["data"] == {"CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": expected}
    env = {
        e["name"]: e.get("value")
        for e in r.get("Pod", "chroma-chromadb-test-heartbeat")["spec"]["containers"][0]["env"]
    }
    assert env["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"] == expected
    assert env["CHROMA_TOKEN_FILE"] == "/etc/chromactl/auth/token"


def test_basic_auth_secret_and_config() -> None:
    r = render({"chromadb": {"auth": {"type": "basic", "basic": {"username": "admin"}}}})
    secret = r.get("Secret", "chromadb-auth")
    assert base64.b64decode(secret["data"]["username"]) == b"admin"
    assert len(base64.b64decode(secret["data"]["password"])) == 24
    assert not r.has("ConfigMap", "chroma-chromadb-token-auth-config")
    (user,) = chromactl_config(r)["gateway"]["auth"]["basic"]["users"]
    assert user["password_file"] == "/etc/chromactl/auth/password"


def test_extra_credentials_with_roles_and_scope() -> None:
    cred = {
        "name": "dash",
        "role": "reader",
        "secretName": "dash-token",
        "tenants": ["acme"],
        "databases": ["prod*"],
    }
    r = render({"chromadb": {"auth": {"credentials": [cred]}}})
    _, reader = chromactl_config(r)["gateway"]["auth"]["token"]["credentials"]
    assert reader == {
        "name": "dash",
        "role": "reader",
        "tenants": ["acme"],
        "databases": ["prod*"],
        "token_file": "/etc/chromactl/credentials/dash/token",
    }
    mounts = {m["name"]: m["mountPath"] for m in r.container("gateway")["volumeMounts"]}
    assert mounts["credential-dash"] == "/etc/chromactl/credentials/dash"


def test_auth_off_still_runs_the_gateway() -> None:
    r = render({"chromadb": {"auth": {"enabled": False}}})
    assert chromactl_config(r)["gateway"]["auth"] == {"enabled": False}
    assert "gateway" in [c["name"] for c in r.pod_spec["containers"]]
    assert not r.has("Secret")


def test_legacy_versions_run_without_the_gateway() -> None:
    r = render({"chromadb": {"apiVersion": "0.6.3"}})
    assert [c["name"] for c in r.pod_spec["containers"]] == ["chroma"]


def test_notes_print_how_to_read_the_credentials() -> None:
    token = render().notes
    assert "get secret chromadb-auth -o jsonpath='{.data.token}'" in token
    assert "chroma-chromadb-token-auth-config" in token
    assert '-H "${CHROMA_HEADER_NAME}: Bearer ${CHROMA_TOKEN}"' in token
    x_header = render({"chromadb": {"auth": {"token": {"tokenHeader": "X-CHROMA-TOKEN"}}}}).notes
    assert '-H "${CHROMA_HEADER_NAME}: ${CHROMA_TOKEN}"' in x_header
    assert '"X-Chroma-Token": os.environ["CHROMA_TOKEN"]' in x_header
    basic = render({"chromadb": {"auth": {"type": "basic"}}}).notes
    assert 'curl -u "${CHROMA_USER}:${CHROMA_PASSWORD}"' in basic
    assert "served without authentication" in render({"gateway": {"enabled": False}}).notes


def test_workers_follow_the_cpu_unless_set() -> None:
    """gateway.workers: empty lets the gateway size itself from its CPU limit or request (the
    request reaches it through the downward API); a number is passed through."""
    default = render()
    assert "workers" not in chromactl_config(default)["gateway"]
    assert parse_config(chromactl_config(default)).gateway.workers is None
    gateway = next(
        c
        for c in default.get("StatefulSet", "chroma-chromadb")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "gateway"
    )
    request = next(e for e in gateway["env"] if e["name"] == "CHROMACTL_CPU_REQUEST")
    assert request["valueFrom"]["resourceFieldRef"] == {
        "containerName": "gateway",
        "resource": "requests.cpu",
        "divisor": "1m",
    }
    assert chromactl_config(render({"gateway": {"workers": 4}}))["gateway"]["workers"] == 4


def test_workers_below_one_are_refused() -> None:
    assert "workers" in render_error({"gateway": {"workers": 0}})


def test_audit_values_reach_the_gateway_config() -> None:
    """gateway.audit: on for admin operations and writes by default, reads when asked, off
    when disabled; written to standard output (no file) in the pod."""
    default = parse_config(chromactl_config(render())).gateway.audit
    assert (default.enabled, default.reads, default.file) == (True, False, None)
    reads = parse_config(chromactl_config(render({"gateway": {"audit": {"reads": True}}}))).gateway.audit
    assert reads.reads
    off = parse_config(chromactl_config(render({"gateway": {"audit": {"enabled": False}}}))).gateway.audit
    assert not off.enabled
    assert "audit" in render_error({"gateway": {"audit": {"reads": "sometimes"}}})


def test_limits_go_to_a_configmap_the_gateway_rereads_without_a_restart() -> None:
    def limited(rps: float) -> Render:
        return render(
            {
                "gateway": {
                    "limits": {
                        "enabled": True,
                        "credentials": {"*": {"requestsPerSecond": rps, "burst": 20}},
                        "tenants": {"team-a": {"maxCollections": 10, "maxRecordsPerCollection": 1000}},
                    }
                }
            }
        )

    r = limited(10)
    limits = parse_config(chromactl_config(r)).gateway.limits
    assert limits.enabled and str(limits.file) == "/etc/chromactl/limits/limits.yaml"
    rules = yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-limits")["data"]["limits.yaml"])
    checked = LimitsSettings.model_validate(rules)  # what the gateway reads from the file
    assert checked.credentials["*"].requests_per_second == 10 and checked.credentials["*"].burst == 20
    assert checked.tenants["team-a"].max_records_per_collection == 1000
    mounts = {m["name"]: m["mountPath"] for m in r.container("gateway")["volumeMounts"]}
    assert mounts["limits"] == "/etc/chromactl/limits"
    # New rules change the ConfigMap only: the pod template (and its checksums) stays.
    assert limited(99).pod_spec == r.pod_spec
    annotations = lambda x: x.get("StatefulSet")["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert annotations(limited(99)) == annotations(r)
    assert not render().has("ConfigMap", "chroma-chromadb-limits")
    assert "/gateway/limits/credentials/a/requestsPerSecond" in render_error(
        {"gateway": {"limits": {"credentials": {"a": {"requestsPerSecond": 0}}}}}
    )
    assert "/gateway/limits/credentials/a" in render_error(
        {"gateway": {"limits": {"credentials": {"a": {"maxCollections": 3}}}}}
    )


def test_legacy_clients_are_served_unless_turned_off() -> None:
    """gateway.legacyClients reaches the gateway's config (docs/legacy-clients.md)."""
    assert parse_config(chromactl_config(render())).gateway.legacy_clients is True
    off = chromactl_config(render({"gateway": {"legacyClients": False}}))
    assert parse_config(off).gateway.legacy_clients is False
    assert "legacyClients" in render_error({"gateway": {"legacyClients": "v1"}})


def test_a_credential_can_be_set_to_1x_clients_only() -> None:
    cred = {"name": "dash", "role": "reader", "secretName": "dash-token", "legacyClients": False}
    config = chromactl_config(render({"chromadb": {"auth": {"credentials": [cred]}}}))
    _, dash = config["gateway"]["auth"]["token"]["credentials"]
    assert dash["legacy_clients"] is False
    assert parse_config(config).gateway.auth.token.credentials[1].legacy_clients is False


def test_the_fast_path_is_on_unless_turned_off() -> None:
    """gateway.fastPath reaches the gateway's config (docs/gateway.md#the-fast-path)."""
    assert parse_config(chromactl_config(render())).gateway.fast_path is True
    off = chromactl_config(render({"gateway": {"fastPath": False}}))
    assert off["gateway"]["fast_path"] is False and parse_config(off).gateway.fast_path is False
    assert "fastPath" in render_error({"gateway": {"fastPath": "sometimes"}})
