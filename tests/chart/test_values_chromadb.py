"""Each `chromadb.*` value: what it renders into Chroma's config and the pod."""

from __future__ import annotations

import pytest

from tests.chart.helm import render, set_values


@pytest.mark.parametrize("given", [True, "true"])
def test_allow_reset_accepts_bool_or_string(given) -> None:
    assert render({"chromadb": {"allowReset": given}}).server_config()["allow_reset"] is True


def test_allow_reset_false_string() -> None:
    assert render({"chromadb": {"allowReset": "false"}}).server_config()["allow_reset"] is False


def test_allow_reset_warns_in_notes() -> None:
    assert "deletes every collection" in render({"chromadb": {"allowReset": True}}).notes
    assert "deletes every collection" not in render().notes


def test_not_persistent_uses_empty_dir_and_warns() -> None:
    r = render({"chromadb": {"isPersistent": False}})
    sts = r.statefulset["spec"]
    assert "volumeClaimTemplates" not in sts
    assert "persistentVolumeClaimRetentionPolicy" not in sts
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert "LOST" in r.notes


def test_persist_directory_is_config_and_mount() -> None:
    r = render({"chromadb": {"persistDirectory": "/var/lib/chroma"}})
    assert r.server_config()["persist_path"] == "/var/lib/chroma"
    mounts = {m["name"]: m["mountPath"] for m in r.container()["volumeMounts"]}
    assert mounts["data"] == "/var/lib/chroma"


@pytest.mark.parametrize("bad", ["relative/path", "/"])
def test_persist_directory_must_be_absolute_dir(bad: str) -> None:
    from tests.chart.helm import names_key, render_error

    assert names_key(render_error({"chromadb": {"persistDirectory": bad}}), "chromadb.persistDirectory")


def test_server_port_is_container_service_and_config() -> None:
    direct = render({"chromadb": {"serverHttpPort": 8080}, "gateway": {"enabled": False}})
    assert direct.server_config()["port"] == 8080
    assert direct.container()["ports"][0]["containerPort"] == 8080
    r = render({"chromadb": {"serverHttpPort": 8080}})
    assert r.server_config()["port"] == 8001
    assert r.container("gateway")["ports"][0]["containerPort"] == 8080
    assert r.get("Service", "chroma-chromadb")["spec"]["ports"][0]["port"] == 8080
    assert "http://chroma-chromadb:8080" in r.notes


def test_server_host() -> None:
    direct = render({"chromadb": {"serverHost": "::"}, "gateway": {"enabled": False}})
    assert direct.server_config()["listen_address"] == "::"
    assert render({"chromadb": {"serverHost": "::"}}).server_config()["listen_address"] == "127.0.0.1"


def test_cors_origins() -> None:
    assert "cors_allow_origins" not in render().server_config()
    r = render({"chromadb": {"corsAllowOrigins": ["https://a.example", "https://b.example"]}})
    assert r.server_config()["cors_allow_origins"] == ["https://a.example", "https://b.example"]
    assert "any web page" in render({"chromadb": {"corsAllowOrigins": ["*"]}}).notes


def test_max_payload() -> None:
    assert (
        render({"chromadb": {"maxPayloadSizeBytes": 1000}}).server_config()["max_payload_size_bytes"] == 1000
    )


def test_data_volume_size_class_modes_and_retention() -> None:
    r = render(
        {
            "chromadb": {
                "dataVolumeSize": "20Gi",
                "dataVolumeStorageClass": "fast",
                "dataVolumeAccessModes": ["ReadWriteOncePod"],
                "dataVolumeRetention": {"whenDeleted": "Delete"},
            }
        }
    )
    sts = r.statefulset["spec"]
    claim = sts["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    assert claim["storageClassName"] == "fast"
    assert claim["accessModes"] == ["ReadWriteOncePod"]
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert "uninstalling deletes the data" in r.notes


def test_extra_config_is_deep_merged() -> None:
    cfg = render(
        {
            "chromadb": {
                "extraConfig": {"sqlitedb": {"hash_type": "sha256"}, "circuit_breaker": {"requests": 10}}
            }
        }
    ).server_config()
    assert cfg["sqlitedb"] == {"hash_type": "sha256"}
    assert cfg["circuit_breaker"] == {"requests": 10}
    assert cfg["port"] == 8001


def test_extra_config_unknown_key_fails_naming_it() -> None:
    from tests.chart.helm import render_error

    message = render_error({"chromadb": {"extraConfig": {"persist_directory": "/x"}}})
    assert "chromadb.extraConfig.persist_directory" in message
    assert "ignore it silently" in message


def test_extra_config_cannot_override_chart_keys() -> None:
    from tests.chart.helm import render_error

    message = render_error({"chromadb": {"extraConfig": {"port": 9000}}})
    assert "use chromadb.serverHttpPort instead" in message


def test_api_version_selects_image_tag() -> None:
    assert (
        render({"chromadb": {"apiVersion": "1.0.20"}}).container()["image"]
        == "ghcr.io/chroma-core/chroma:1.0.20"
    )
    explicit = render({"chromadb": {"apiVersion": "1.0.20"}, "image": {"tag": "1.0.21"}})
    assert explicit.container()["image"] == "ghcr.io/chroma-core/chroma:1.0.21"


def test_seed_set_allow_reset() -> None:
    # `--set chromadb.allowReset="true"`: the shell removes the quotes before helm sees them.
    assert render(set_values("chromadb.allowReset=true")).server_config()["allow_reset"] is True


def test_set_string_allow_reset() -> None:
    import helm_python

    values = helm_python.parse_set_string_values("chromadb.allowReset=true")
    assert values == {"chromadb": {"allowReset": "true"}}
    assert render(values).server_config()["allow_reset"] is True
