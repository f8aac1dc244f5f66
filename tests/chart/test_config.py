"""chromactl's config as the chart renders it: values blocks passed through (_config.tpl), and
every file the config names lying on a mount of the container that reads it."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from chromactl.config import parse_config
from tests.chart.helm import Render, everything_values, gateway_tier_values, render

#: Every mounted-file option at once: S3 target with credentials and encryption, off-site copies
#: with their own keys, token credentials, OIDC with its issuer's CA, TLS with client certificates.
MOUNTED = {
    "backup": {
        "enabled": True,
        "target": "s3://backups/chroma",
        "existingSecret": "s3-creds",
        "encryption": {"existingSecret": "backup-key", "key": "secret"},
        "copies": [{"target": "s3://dr/chroma", "existingSecret": "dr-keys"}, {"target": "gs://dr2/chroma"}],
    },
    "chromadb": {
        "auth": {
            "type": "oidc",
            "oidc": {
                "issuer": "https://login.example.com",
                "audience": ["chroma"],
                "issuerCA": {"configMapName": "idp-ca", "key": "bundle.pem"},
                "rules": [{"value": "admins", "role": "admin"}],
            },
            "credentials": [{"name": "dash", "secretName": "dash-token", "key": "t"}],
            "clientCertificates": [{"name": "indexer", "role": "writer"}],
        },
        "tls": {"enabled": True, "clientAuth": "optional", "clientCA": {"secretName": "client-ca"}},
    },
    "gateway": {"limits": {"enabled": True}},
}


def chromactl_config(r: Render) -> dict[str, Any]:
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])


def snake(key: str) -> str:
    """chromadb.config.key, in Python: camelCase to snake_case, a Seconds suffix to _s."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"Seconds$", "S", key)).lower()


def files(config: Any, where: str = "") -> list[tuple[str, str]]:
    """(key, path) of every file, *_file and *_dir setting in the config."""
    found = []
    if isinstance(config, dict):
        for key, value in config.items():
            if (key == "file" or key.endswith(("_file", "_dir"))) and isinstance(value, str):
                found.append((f"{where}{key}", value))
            else:
                found.extend(files(value, f"{where}{key}."))
    elif isinstance(config, list):
        for i, item in enumerate(config):
            found.extend(files(item, f"{where}{i}."))
    return found


def on_a_mount(path: str, container: dict[str, Any]) -> bool:
    return any(PurePosixPath(path).is_relative_to(m["mountPath"]) for m in container.get("volumeMounts", []))


@pytest.mark.parametrize(
    "values",
    [MOUNTED, {"chromadb": {"auth": {"type": "basic"}}}, "everything", "gateway-tier"],
    ids=["mounted", "basic", "everything", "gateway-tier"],
)
def test_every_file_the_config_names_is_mounted_in_the_gateway(values) -> None:
    if isinstance(values, str):
        values = {"everything": everything_values, "gateway-tier": gateway_tier_values}[values]()
    r = render(values)
    config = chromactl_config(r)
    parse_config(config)
    gateway = next(c for _, spec in r.pod_specs() for c in spec["containers"] if c["name"] == "gateway")
    named = [(key, path) for key, path in files(config) if key != "backup.staging_dir"]
    assert named
    assert [(key, path) for key, path in named if not on_a_mount(path, gateway)] == []


def test_the_restore_reads_its_target_credentials_from_its_own_mounts() -> None:
    r = render({**MOUNTED, "backup": {**MOUNTED["backup"], "restore": {"enabled": True}}})
    restore = next(c for c in r.pod_spec["initContainers"] if c["name"] == "restore")
    backup = chromactl_config(r)["backup"]
    assert on_a_mount(backup["credentials_dir"], restore)
    assert on_a_mount(backup["encryption"]["key_file"], restore)
    config_file = restore["command"][2].removeprefix("--config=")
    assert on_a_mount(config_file, restore)


def test_blocks_that_map_onto_the_config_pass_through_with_snake_case_keys() -> None:
    values = everything_values()
    values["gateway"]["workers"] = 3
    values["gateway"]["clientLimits"] = {"headerTimeoutSeconds": 4, "maxConnections": 100000}
    values["gateway"]["audit"] = {"enabled": True, "reads": True}
    values["backup"]["continuous"] = {"enabled": True, "maxLagSeconds": 0.5, "shipIntervalSeconds": 2}
    r = render(values)
    config = chromactl_config(r)
    gateway, backup = config["gateway"], config["backup"]
    assert gateway["workers"] == 3 and gateway["write_wait_s"] == 30
    assert gateway["client_limits"]["header_timeout_s"] == 4
    assert gateway["client_limits"]["max_connections"] == 100000
    assert gateway["client_limits"]["keep_alive_s"] == 75  # from the chart's defaults
    assert gateway["audit"] == {"enabled": True, "reads": True}
    assert backup["continuous"] == {"enabled": True, "max_lag_s": 0.5, "ship_interval_s": 2}
    retention = {snake(k): v for k, v in values["backup"]["retention"].items()}
    assert backup["retention"] == retention
    assert backup["hold_timeout_s"] == values["backup"]["holdTimeoutSeconds"]
    assert backup["compression_level"] == values["backup"]["compressionLevel"]
    metrics = values["metrics"]
    assert gateway["metrics"]["internals_interval_s"] == metrics["internalsIntervalSeconds"]
    assert gateway["metrics"]["database_series"] == metrics["databaseSeries"]
    settings = parse_config(config)
    assert settings.gateway.client_limits.header_timeout_s == 4
    assert settings.backup.continuous.max_lag_s == 0.5


def test_names_and_fsspec_options_keep_their_keys() -> None:
    options = {"account_name": "acme", "AWS_REQUEST_PAYER": "requester", "anonAccess": True}
    rules = {
        "credentials": {"batchLoader": {"recordsPerMinute": 6000}},
        "tenants": {"teamA": {"maxCollections": 5}},
    }
    r = render(
        {
            "backup": {
                "enabled": True,
                "target": "s3://b/p",
                "storageOptions": options,
                "copies": [{"target": "s3://dr/p", "storageOptions": options}],
            },
            "gateway": {"limits": {"enabled": True, **rules}},
        }
    )
    backup = chromactl_config(r)["backup"]
    assert backup["storage_options"] == options
    assert backup["copies"][0]["storage_options"] == options
    limits = yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-limits")["data"]["limits.yaml"])
    assert limits == {
        "credentials": {"batchLoader": {"records_per_minute": 6000}},
        "tenants": {"teamA": {"max_collections": 5}},
    }
    assert chromactl_config(r)["gateway"]["limits"]["pause_refused_connections"] is True


def test_pause_refused_connections_reaches_the_gateway() -> None:
    r = render({"gateway": {"limits": {"enabled": True, "pauseRefusedConnections": False}}})
    settings = parse_config(chromactl_config(r))
    assert settings.gateway.limits.pause_refused_connections is False


def test_settings_left_empty_take_chromactls_default() -> None:
    r = render(
        {
            "backup": {"enabled": True, "target": "s3://b/p", "endpointUrl": "", "region": ""},
            "chromadb": {
                "auth": {
                    "type": "oidc",
                    "oidc": {
                        "issuer": "https://login.example.com",
                        "audience": ["chroma"],
                        "defaultGrant": {},
                        "discoveryUrl": "",
                        "rules": [{"value": "admins", "role": "admin"}],
                    },
                }
            },
        }
    )
    config = chromactl_config(r)
    for key in ("endpoint_url", "region", "storage_options"):
        assert key not in config["backup"]
    assert "workers" not in config["gateway"]
    oidc = config["gateway"]["auth"]["oidc"]
    # An empty defaultGrant grants nothing (not chromactl's default Grant: reader on everything).
    assert "default_grant" not in oidc and "discovery_url" not in oidc
    assert parse_config(config).gateway.auth.oidc.default_grant is None
