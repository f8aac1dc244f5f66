"""``GET /api/v2/auth/identity`` is answered by the gateway, in exactly Chroma's shape."""

from __future__ import annotations

import httpx
import pytest

from chromactl.gateway.principal import Grant, Principal, Role
from tests.gateway.conftest import ADMIN_TOKEN, TENANT_B_TOKEN
from tests.gateway.helpers import RunningGateway

KEYS = {"user_id", "tenant", "databases"}


def test_unrestricted_identity() -> None:
    p = Principal("alice", "token", (Grant(Role.ADMIN),))
    assert p.identity() == {"user_id": "alice", "tenant": "*", "databases": ["*"]}


def test_scoped_identity() -> None:
    p = Principal("bob", "token", (Grant(Role.READER, ("acme",), ("prod", "acme/dev")),))
    assert p.identity() == {"user_id": "bob", "tenant": "acme", "databases": ["prod", "dev"]}


def test_several_tenants_report_a_wildcard() -> None:
    p = Principal("c", "oidc", (Grant(Role.READER, ("a",)), Grant(Role.READER, ("b",))))
    assert p.identity()["tenant"] == "*"


@pytest.mark.slow
def test_identity_over_http(token_gateway: RunningGateway) -> None:
    resp = httpx.get(token_gateway.url + "/api/v2/auth/identity", headers={"X-Chroma-Token": TENANT_B_TOKEN})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == KEYS
    assert body == {"user_id": "tenant-b-reader", "tenant": "tenant-b", "databases": ["*"]}


@pytest.mark.slow
def test_python_client_reads_identity(token_gateway: RunningGateway) -> None:
    import chromadb
    from chromadb.config import Settings as ClientSettings

    host, port = token_gateway.url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(
        host=host,
        port=int(port),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        settings=ClientSettings(anonymized_telemetry=False),
    )
    identity = client.get_user_identity()
    assert identity.user_id == "admin"
    assert identity.tenant == "*"


@pytest.mark.slow
def test_identity_needs_credentials(token_gateway: RunningGateway) -> None:
    assert httpx.get(token_gateway.url + "/api/v2/auth/identity").status_code == 401
