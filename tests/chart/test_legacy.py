"""Legacy Chroma 0.4 to 0.6: the Python server configured by environment variables."""

from __future__ import annotations

import pytest

from tests.chart.helm import names_key, render, render_error


@pytest.mark.parametrize("version", ["0.4.24", "0.5.5", "0.6.3"])
def test_legacy_gets_env_config_and_no_config_file(version: str) -> None:
    r = render({"chromadb": {"apiVersion": version}})
    assert not r.has("ConfigMap", "chroma-chromadb-config")
    env = r.env()
    assert env["IS_PERSISTENT"] == "TRUE"
    assert env["PERSIST_DIRECTORY"] == "/data"
    assert env["ALLOW_RESET"] == "FALSE"
    assert env["ANONYMIZED_TELEMETRY"] == "FALSE"
    assert env["CHROMA_API_IMPL"] == "chromadb.api.segment.SegmentAPI"
    chroma = r.container()
    assert chroma["image"] == f"ghcr.io/chroma-core/chroma:{version}"
    assert chroma["command"] == ["uvicorn", "chromadb.app:app"]
    assert "--port=8000" in chroma["args"] and "--host=0.0.0.0" in chroma["args"]


def test_legacy_log_config_is_mounted_where_uvicorn_reads_it() -> None:
    r = render({"chromadb": {"apiVersion": "0.6.3"}})
    chroma = r.container()
    assert "--log-config=/chroma/config/log_config.yaml" in chroma["args"]
    mount = next(m for m in chroma["volumeMounts"] if m["name"] == "log-config")
    assert mount["mountPath"] == "/chroma/config/log_config.yaml"
    assert mount["subPath"] == "log_config.yaml"
    assert "log_config.yaml" in r.get("ConfigMap", "chroma-chromadb-log-config")["data"]
    absolute = render({"chromadb": {"apiVersion": "0.6.3", "logConfigFileLocation": "/etc/log.yaml"}})
    assert "--log-config=/etc/log.yaml" in absolute.container()["args"]


def test_legacy_values_reach_the_env() -> None:
    r = render(
        {
            "chromadb": {
                "apiVersion": "0.5.5",
                "allowReset": "true",
                "isPersistent": False,
                "anonymizedTelemetry": True,
                "corsAllowOrigins": ["https://a.example"],
                "apiImpl": "chromadb.api.fastapi.FastAPI",
                "serverHttpPort": 9000,
            }
        }
    )
    env = r.env()
    assert env["ALLOW_RESET"] == "TRUE"
    assert env["IS_PERSISTENT"] == "FALSE"
    assert env["ANONYMIZED_TELEMETRY"] == "TRUE"
    assert env["CHROMA_SERVER_CORS_ALLOW_ORIGINS"] == '["https://a.example"]'
    assert env["CHROMA_API_IMPL"] == "chromadb.api.fastapi.FastAPI"
    assert "--port=9000" in r.container()["args"]


@pytest.mark.parametrize(
    ("version", "path"), [("0.5.5", "/api/v1/heartbeat"), ("0.6.3", "/api/v2/heartbeat")]
)
def test_legacy_probes_use_the_api_the_version_has(version: str, path: str) -> None:
    chroma = render({"chromadb": {"apiVersion": version}}).container()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert chroma[probe]["httpGet"]["path"] == path


def test_too_old_version_is_refused() -> None:
    message = render_error({"chromadb": {"apiVersion": "0.3.29"}})
    assert names_key(message, "chromadb.apiVersion")
