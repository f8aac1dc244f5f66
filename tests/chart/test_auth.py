"""chromadb.auth: OIDC rendered into the gateway config, the issuer's CA mounted, the admin
token kept for helm tests; errors for OIDC values that cannot work."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.helm import render, render_error

OIDC = {
    "issuer": "https://login.example.com/realms/main",
    "audience": ["chroma"],
    "rules": [{"claim": "groups", "value": "chroma-admins", "role": "admin"}],
}


def oidc(**values: Any) -> dict[str, Any]:
    return {"chromadb": {"auth": {"type": "oidc", "oidc": {**OIDC, **values}}}}


def gateway_auth(values: dict[str, Any]) -> dict[str, Any]:
    r = render(values)
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])[
        "gateway"
    ]["auth"]


def test_oidc_settings_reach_the_gateway() -> None:
    auth = gateway_auth(
        oidc(
            algorithms=["ES256"],
            clockSkewSeconds=5,
            userClaim="email",
            jwksUrl="https://login.example.com/keys",
            defaultGrant={"role": "reader", "tenants": ["team-a"]},
            rules=[
                {
                    "claim": "realm_access.roles",
                    "value": "chroma-write",
                    "role": "writer",
                    "databases": ["team-a/*"],
                },
                {"value": "chroma-admins", "role": "admin"},
            ],
        )
    )
    assert auth["oidc"] == {
        "issuer": "https://login.example.com/realms/main",
        "audience": ["chroma"],
        "algorithms": ["ES256"],
        "clock_skew_s": 5,
        "user_claim": "email",
        "jwks_url": "https://login.example.com/keys",
        "default_grant": {"role": "reader", "tenants": ["team-a"], "databases": ["*"]},
        "rules": [
            {
                "claim": "realm_access.roles",
                "value": "chroma-write",
                "role": "writer",
                "tenants": ["*"],
                "databases": ["team-a/*"],
            },
            {
                "claim": "groups",
                "value": "chroma-admins",
                "role": "admin",
                "tenants": ["*"],
                "databases": ["*"],
            },
        ],
    }
    # The generated admin token stays: helm tests, backups, break-glass.
    assert auth["token"]["credentials"][0]["token_file"] == "/etc/chromactl/auth/token"
    assert "discovery_url" not in auth["oidc"] and "ca_file" not in auth["oidc"]


def test_the_rendered_config_is_valid_for_the_gateway() -> None:
    from chromactl.config import parse_config

    r = render(oidc(issuerCA={"secretName": "idp-ca"}, defaultGrant={"role": "reader"}))
    parse_config(yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"]))


@pytest.mark.parametrize(
    ("source", "kind"), [({"secretName": "idp-ca"}, "secret"), ({"configMapName": "idp-ca"}, "configMap")]
)
def test_issuer_ca_is_mounted(source: dict[str, str], kind: str) -> None:
    values = oidc(issuerCA={**source, "key": "bundle.pem"})
    assert gateway_auth(values)["oidc"]["ca_file"] == "/etc/chromactl/oidc-ca/bundle.pem"
    r = render(values)
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "oidc-ca")
    assert volume[kind]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
    assert {"name": "oidc-ca", "mountPath": "/etc/chromactl/oidc-ca", "readOnly": True} in (
        r.container("gateway")["volumeMounts"]
    )


def test_oidc_keeps_the_token_secret_header_and_helm_test_credentials() -> None:
    r = render(oidc())
    assert set(r.get("Secret", "chromadb-auth")["data"]) == {"token"}
    assert r.has("ConfigMap", "chroma-chromadb-token-auth-config")
    env = {e["name"] for e in r.get("Pod", "chroma-chromadb-test-collection")["spec"]["containers"][0]["env"]}
    assert "CHROMA_TOKEN_FILE" in env
    assert "Authentication: OIDC" in r.notes and "login.example.com" in r.notes


def test_token_type_has_no_oidc_section() -> None:
    assert "oidc" not in gateway_auth({})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (oidc(issuer=""), "chromadb.auth.oidc.issuer"),
        (oidc(audience=[]), "chromadb.auth.oidc.audience"),
        (oidc(rules=[]), "grants nothing"),
        (oidc(issuerCA={"secretName": "a", "configMapName": "b"}), "not both"),
        (oidc(algorithms=["HS256"]), "algorithms"),
        (oidc(algorithms=["none"]), "algorithms"),
        (oidc(issuer="login.example.com"), "issuer"),
        (oidc(rules=[{"value": "x", "role": "owner"}]), "role"),
    ],
)
def test_bad_oidc_values_name_the_key(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)
