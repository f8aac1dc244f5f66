"""A collection id from another tenant is refused, even though Chroma would serve it."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gateway.conftest import ADMIN_TOKEN, TENANT_B_TOKEN, TENANT_B_WRITER_TOKEN
from tests.gateway.helpers import CLIENT_1X_AGENT, Chroma, RunningGateway

A = "/api/v2/tenants/default_tenant/databases/default_database"
B = "/api/v2/tenants/tenant-b/databases/db-b"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
B_READER = {"Authorization": f"Bearer {TENANT_B_TOKEN}"}
B_WRITER = {"X-Chroma-Token": TENANT_B_WRITER_TOKEN}


@pytest.fixture(scope="module")
def collections(token_gateway: RunningGateway) -> dict[str, str]:
    with token_gateway.client(**ADMIN) as c:
        c.post("/api/v2/tenants", json={"name": "tenant-b"})
        c.post("/api/v2/tenants/tenant-b/databases", json={"name": "db-b"})
        a = c.post(f"{A}/collections", json={"name": "secret-a", "get_or_create": True}).json()
        b = c.post(f"{B}/collections", json={"name": "own-b", "get_or_create": True}).json()
        c.post(
            f"{A}/collections/{a['id']}/upsert",
            json={"ids": ["s1"], "embeddings": [[1.0, 1.0]], "documents": ["tenant A secret"]},
        ).raise_for_status()
        c.post(
            f"{B}/collections/{b['id']}/upsert", json={"ids": ["b1"], "embeddings": [[2.0, 2.0]]}
        ).raise_for_status()
    return {"a": a["id"], "b": b["id"]}


@pytest.mark.slow
def test_chroma_alone_leaks_across_tenants(chroma: Chroma, collections: dict[str, str]) -> None:
    # The fact this protection exists for: Chroma serves tenant A's records via B's path.
    resp = httpx.post(f"{chroma.url}{B}/collections/{collections['a']}/get", json={})
    assert resp.status_code == 200
    assert resp.json()["ids"] == ["s1"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "verb", "body"),
    [
        ("POST", "get", {}),
        ("POST", "query", {"query_embeddings": [[1.0, 1.0]], "n_results": 1}),
        ("GET", "count", None),
    ],
)
def test_foreign_collection_id_is_refused(
    token_gateway: RunningGateway,
    collections: dict[str, str],
    method: str,
    verb: str,
    body: dict[str, object] | None,
) -> None:
    url = f"{token_gateway.url}{B}/collections/{collections['a']}/{verb}"
    resp = httpx.request(method, url, json=body, headers={**B_READER, "User-Agent": CLIENT_1X_AGENT})
    assert resp.status_code == 404
    assert resp.json()["error"] == "NotFoundError"
    assert "secret" not in resp.text
    # a 0.5/0.6 client is refused alike, in its own exception's name (docs/legacy-clients.md)
    content = json.dumps(body).encode() if body is not None else None
    old = httpx.request(method, url, content=content, headers=B_READER)
    assert old.status_code == 404 and old.json()["error"] == "InvalidCollection"
    assert "secret" not in old.text
    own = f"{token_gateway.url}{B}/collections/{collections['b']}/{verb}"
    assert httpx.request(method, own, json=body, headers=B_READER).status_code == 200


@pytest.mark.slow
def test_foreign_collection_cannot_be_written_or_renamed(
    token_gateway: RunningGateway, collections: dict[str, str]
) -> None:
    base = f"{token_gateway.url}{B}/collections/{collections['a']}"
    add = httpx.post(f"{base}/add", json={"ids": ["evil"], "embeddings": [[0.0, 0.0]]}, headers=B_WRITER)
    assert add.status_code == 404
    put = httpx.put(base, json={"new_metadata": {"pwned": True}}, headers=B_WRITER)
    assert put.status_code == 404
    with token_gateway.client(**ADMIN) as c:
        got = c.post(f"{A}/collections/{collections['a']}/get", json={}).json()
        assert got["ids"] == ["s1"]
        col = c.get(f"{A}/collections/secret-a").json()
        assert not col.get("metadata")


@pytest.mark.slow
def test_scoped_principal_cannot_use_the_other_tenants_path(
    token_gateway: RunningGateway, collections: dict[str, str]
) -> None:
    resp = httpx.post(f"{token_gateway.url}{A}/collections/{collections['a']}/get", json={}, headers=B_READER)
    assert resp.status_code == 403
    assert resp.json()["error"] == "AuthorizationError"
    listing = httpx.get(f"{token_gateway.url}{A}/collections", headers=B_READER)
    assert listing.status_code == 403


@pytest.mark.slow
def test_resolution_is_cached_and_forgotten_on_delete(token_gateway: RunningGateway) -> None:
    resolver = token_gateway.gateway.resolver
    with token_gateway.client(**B_WRITER) as c:
        col = c.post(f"{B}/collections", json={"name": "short-lived"}).json()
        before = resolver.lookups
        for _ in range(3):
            assert c.get(f"{B}/collections/{col['id']}/count").status_code == 200
        assert resolver.lookups == before + 1
        assert resolver.cached(col["id"]) == ("tenant-b", "db-b")
        assert c.delete(f"{B}/collections/short-lived").status_code == 200
        assert resolver.cached(col["id"]) is None
        assert c.get(f"{B}/collections/{col['id']}/count").status_code == 404
