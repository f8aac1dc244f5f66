"""The web console in the chart: its values block, the session key every pod shares, and the
OIDC sign-in."""

from __future__ import annotations

import base64

from chromactl.config import parse_config
from tests.chart.helm import render, render_error
from tests.chart.test_auth import oidc
from tests.chart.test_gateway import chromactl_config

KEY_DIR = "/etc/chromactl/console"


def test_on_by_default_with_a_generated_key_mounted_in_the_gateway() -> None:
    r = render()
    console = chromactl_config(r)["gateway"]["console"]
    assert console == {
        "enabled": True,
        "session_ttl_s": 1800,
        "page_size": 20,
        "session_key_file": f"{KEY_DIR}/key",
    }
    key = base64.b64decode(r.get("Secret", "chroma-chromadb-console")["data"]["key"])
    assert len(key) == 64
    gateway = r.container("gateway")
    assert {"name": "console", "mountPath": KEY_DIR, "readOnly": True} in gateway["volumeMounts"]
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["console"]["secret"]["secretName"] == "chroma-chromadb-console"


def test_values_reach_chromactl_as_its_settings() -> None:
    r = render({"gateway": {"console": {"sessionTtlSeconds": 600, "publicUrl": "https://c.example/console"}}})
    settings = parse_config(chromactl_config(r)).gateway.console
    assert settings.session_ttl_s == 600 and settings.public_url == "https://c.example/console"


def test_off_means_no_key_and_no_mount() -> None:
    r = render({"gateway": {"console": {"enabled": False}}})
    assert chromactl_config(r)["gateway"]["console"] == {
        "enabled": False,
        "session_ttl_s": 1800,
        "page_size": 20,
    }
    assert not r.has("Secret", "chroma-chromadb-console")
    assert "console" not in {m["name"] for m in r.container("gateway")["volumeMounts"]}


def test_oidc_sign_in_with_oidc_auth() -> None:
    values = oidc()
    values["gateway"] = {"console": {"oidc": {"clientId": "chroma-console", "scopes": ["openid", "chroma"]}}}
    config = chromactl_config(render(values))
    assert config["gateway"]["console"]["oidc"] == {
        "client_id": "chroma-console",
        "scopes": ["openid", "chroma"],
    }
    assert parse_config(config).gateway.console.oidc is not None


def test_oidc_sign_in_without_oidc_auth_says_what_to_set() -> None:
    message = render_error({"gateway": {"console": {"oidc": {"clientId": "chroma-console"}}}})
    assert "set chromadb.auth.type: oidc" in message


def test_notes_give_the_console_address() -> None:
    assert "The web console (read-only, same credentials): http://localhost:8000/console/" in render().notes
    assert "/console/" not in render({"gateway": {"console": {"enabled": False}}}).notes


def test_an_existing_key_secret_is_mounted_and_none_is_made() -> None:
    r = render({"gateway": {"console": {"sessionKeySecret": "chroma-console-key"}}})
    assert not r.has("Secret", "chroma-chromadb-console")
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["console"]["secret"]["secretName"] == "chroma-console-key"
    assert "session_key_secret" not in chromactl_config(r)["gateway"]["console"]
