"""Roles and scopes, per request, through the gateway to a real Chroma."""

from __future__ import annotations

import uuid
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.config import Settings as ClientSettings
from chromadb.errors import AuthorizationError

from chromactl.gateway.principal import Grant, Principal, Reach, Role
from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, WRITER_TOKEN, token_config
from tests.gateway.helpers import Chroma, RunningGateway, run_gateway

D = "/api/v2/tenants/default_tenant/databases/default_database"


def test_grant_patterns() -> None:
    g = Grant(Role.READER, ("team-*",), ("prod", "team-x/scratch"))
    assert g.covers_database("team-a", "prod")
    assert not g.covers_database("other", "prod")
    assert g.covers_database("team-x", "scratch")
    assert not g.covers_database("team-a", "scratch")
    assert g.covers_tenant("team-b")
    assert not g.covers_whole_tenant("team-a")
    assert Grant(Role.ADMIN, ("t",), ("t/*",)).covers_whole_tenant("t")
    assert not g.covers_everything()


def test_roles_are_ordered() -> None:
    writer = Principal("w", "token", (Grant(Role.WRITER),))
    assert writer.may(Role.READER, Reach.DATABASE, "a", "b")
    assert writer.may(Role.WRITER, Reach.DATABASE, "a", "b")
    assert not writer.may(Role.ADMIN, Reach.WHOLE_TENANT, "a")
    nobody = Principal("n", "oidc", ())
    assert not nobody.may(Role.READER, Reach.DATABASE, "a", "b")


def test_best_grant_wins() -> None:
    p = Principal("m", "oidc", (Grant(Role.READER), Grant(Role.WRITER, ("team-a",), ("*",))))
    assert p.may(Role.WRITER, Reach.DATABASE, "team-a", "x")
    assert not p.may(Role.WRITER, Reach.DATABASE, "team-b", "x")
    assert p.may(Role.READER, Reach.DATABASE, "team-b", "x")


def _client(gw: RunningGateway, token: str) -> chromadb.api.ClientAPI:
    host, port = gw.url.removeprefix("http://").split(":")
    return chromadb.HttpClient(
        host=host,
        port=int(port),
        headers={"Authorization": f"Bearer {token}"},
        settings=ClientSettings(anonymized_telemetry=False),
    )


@pytest.mark.slow
def test_reader_reads_but_cannot_write(token_gateway: RunningGateway) -> None:
    admin = _client(token_gateway, ADMIN_TOKEN)
    col = admin.get_or_create_collection("rbac-reader")
    col.upsert(ids=["1"], embeddings=[[1.0, 2.0]])
    reader = _client(token_gateway, READER_TOKEN)
    rcol = reader.get_collection("rbac-reader")
    assert rcol.count() == 1
    assert rcol.get(ids=["1"])["ids"] == ["1"]  # POST .../get is a read
    assert rcol.query(query_embeddings=[[1.0, 2.0]], n_results=1)["ids"] == [["1"]]
    with pytest.raises(AuthorizationError):
        rcol.add(ids=["2"], embeddings=[[0.0, 0.0]])
    with pytest.raises(AuthorizationError):
        rcol.delete(ids=["1"])
    with pytest.raises(AuthorizationError):
        reader.create_collection("rbac-reader-new")
    with pytest.raises(AuthorizationError):
        reader.delete_collection("rbac-reader")
    assert col.count() == 1


@pytest.mark.slow
def test_writer_writes_but_cannot_administer(token_gateway: RunningGateway) -> None:
    writer = _client(token_gateway, WRITER_TOKEN)
    col = writer.get_or_create_collection("rbac-writer")
    col.upsert(ids=["1"], embeddings=[[1.0, 2.0]])
    col.modify(metadata={"k": "v"})
    assert col.count() == 1
    h = {"Authorization": f"Bearer {WRITER_TOKEN}"}
    resp = httpx.post(f"{token_gateway.url}/api/v2/tenants", json={"name": "no-way"}, headers=h)
    assert resp.status_code == 403
    assert resp.json()["error"] == "AuthorizationError"
    resp = httpx.post(
        f"{token_gateway.url}/api/v2/tenants/default_tenant/databases",
        json={"name": "no-way"},
        headers=h,
    )
    assert resp.status_code == 403
    writer.delete_collection("rbac-writer")


@pytest.mark.slow
def test_admin_creates_tenants_and_databases(token_gateway: RunningGateway) -> None:
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert (
        httpx.post(f"{token_gateway.url}/api/v2/tenants", json={"name": name}, headers=h).status_code == 200
    )
    resp = httpx.post(f"{token_gateway.url}/api/v2/tenants/{name}/databases", json={"name": "db1"}, headers=h)
    assert resp.status_code == 200
    assert httpx.get(f"{token_gateway.url}/api/v2/tenants/{name}/databases/db1", headers=h).status_code == 200


@pytest.mark.slow
def test_crn_route_is_blocked(token_gateway: RunningGateway, chroma: Chroma) -> None:
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = httpx.get(f"{token_gateway.url}/api/v2/collections/default_tenant:default_database:x", headers=h)
    assert resp.status_code == 403
    assert resp.json()["error"] == "AuthorizationError"
    # Chroma survived (the request never reached its panicking handler).
    assert httpx.get(chroma.url + "/api/v2/heartbeat").status_code == 200


@pytest.mark.slow
def test_reset_is_refused_unless_allowed(token_gateway: RunningGateway) -> None:
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = httpx.post(f"{token_gateway.url}/api/v2/reset", headers=h)
    assert resp.status_code == 403
    assert "reset is disabled" in resp.json()["message"]
    assert httpx.get(f"{token_gateway.url}{D}/collections", headers=h).status_code == 200


@pytest.mark.slow
def test_reset_when_allowed_needs_admin(
    tmp_path: Path, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A Chroma of its own: reset wipes everything.
    from tests.gateway.helpers import run_chroma

    with (
        run_chroma(tmp_path / "chroma") as own,
        run_gateway(token_config(own, secrets_dir, allow_reset=True)) as gw,
    ):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        writer = {"Authorization": f"Bearer {WRITER_TOKEN}"}
        httpx.post(f"{gw.url}{D}/collections", json={"name": "wiped"}, headers=admin)
        assert httpx.post(f"{gw.url}/api/v2/reset", headers=writer).status_code == 403
        assert httpx.post(f"{gw.url}/api/v2/reset", headers=admin).status_code == 200
        assert httpx.get(f"{gw.url}{D}/collections", headers=admin).json() == []


@pytest.mark.slow
def test_unknown_routes_need_admin(token_gateway: RunningGateway) -> None:
    reader = {"Authorization": f"Bearer {READER_TOKEN}"}
    resp = httpx.get(f"{token_gateway.url}/api/v2/not-a-route", headers=reader)
    assert resp.status_code == 403
