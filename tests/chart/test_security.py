"""gateway.clientLimits: the slow-client limits reach chromactl's config (docs/security.md)."""

from __future__ import annotations

import yaml

from chromactl.config import ClientLimitsSettings, parse_config
from tests.chart.helm import Render, render, render_error, set_values


def _limits(r: Render) -> ClientLimitsSettings:
    data = yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])
    return parse_config(data, source="rendered chromactl.yaml").gateway.client_limits


def test_defaults_match_chromactl_defaults() -> None:
    assert _limits(render()) == ClientLimitsSettings()


def test_every_limit_is_passed_through() -> None:
    r = render(
        set_values(
            "gateway.clientLimits.headerTimeoutSeconds=4",
            "gateway.clientLimits.bodyTimeoutSeconds=7",
            "gateway.clientLimits.bodyDeadlineSeconds=900",
            "gateway.clientLimits.keepAliveSeconds=20",
            "gateway.clientLimits.maxConnections=4096",
            "gateway.clientLimits.maxHeaderBytes=131072",
        )
    )
    assert _limits(r) == ClientLimitsSettings(
        header_timeout_s=4,
        body_timeout_s=7,
        body_deadline_s=900,
        keep_alive_s=20,
        max_connections=4096,
        max_header_bytes=131072,
    )


def test_bad_limit_is_refused_naming_the_value() -> None:
    message = render_error(set_values("gateway.clientLimits.maxConnections=0"))
    assert "maxConnections" in message
