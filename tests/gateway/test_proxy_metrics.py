"""Path prefixes on both sides of the proxy, and the metrics port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chromactl.config import parse_config
from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, token_config
from tests.gateway.helpers import Chroma, RunningGateway, run_gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
D = "/api/v2/tenants/default_tenant/databases/default_database"


@pytest.mark.slow
def test_gateway_under_a_path_prefix(chroma: Chroma, secrets_dir: Path) -> None:
    with run_gateway(token_config(chroma, secrets_dir, path_prefix="/chroma")) as gw:
        assert httpx.get(f"{gw.url}/chroma/api/v2/heartbeat").status_code == 200
        assert httpx.get(f"{gw.url}/chroma{D}/collections", headers=ADMIN).status_code == 200
        assert httpx.get(f"{gw.url}/chroma{D}/collections").status_code == 401


@pytest.mark.slow
def test_metrics_count_operations_and_auth_failures(token_gateway: RunningGateway) -> None:
    httpx.get(f"{token_gateway.url}{D}/collections", headers={"X-Chroma-Token": "bad"})
    httpx.post(
        f"{token_gateway.url}{D}/collections",
        json={"name": "metrics-no"},
        headers={"X-Chroma-Token": READER_TOKEN},
    )
    httpx.get(f"{token_gateway.url}{D}/collections", headers=ADMIN)
    assert token_gateway.metrics_url is not None
    text = httpx.get(token_gateway.metrics_url).text
    assert 'chromactl_gateway_auth_failures_total{reason="invalid_token"}' in text
    assert (
        'chromactl_gateway_requests_total{database="default_database",operation="list_collections",'
        'status_class="2xx",tenant="default_tenant"}'
    ) in text
    # Refused requests do not name the tenant/database they asked for.
    assert (
        'chromactl_gateway_requests_total{database="",operation="create_collection",'
        'status_class="4xx",tenant=""}'
    ) in text
    denied = 'chromactl_gateway_authorization_denied_total{operation="create_collection",reason="forbidden"}'
    assert denied in text
    assert "chromactl_gateway_request_duration_seconds_bucket" in text
    # The metrics are not served on the client port.
    on_client_port = httpx.get(f"{token_gateway.url}/metrics", headers=ADMIN)
    assert on_client_port.status_code == 404  # forwarded to Chroma, which has none
    assert "chromactl_gateway" not in on_client_port.text


def test_config_rejects_unknown_keys_and_inline_secrets() -> None:
    from chromactl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gateway\.auth\.token\.credentials\.0\.token"):
        parse_config({"gateway": {"auth": {"token": {"credentials": [{"name": "a", "token": "inline"}]}}}})
    with pytest.raises(ConfigError, match="exactly one of token_file and token_env"):
        parse_config({"gateway": {"auth": {"token": {"credentials": [{"name": "a"}]}}}})
    with pytest.raises(ConfigError, match="client_ca_file"):
        parse_config({"gateway": {"tls": {"client_auth": "required"}}})
