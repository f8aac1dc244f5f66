"""Route classification: every Chroma 1.x route gets the access it needs."""

from __future__ import annotations

import pytest

from chromactl.gateway.principal import Reach
from chromactl.gateway.routes import Access, classify

T = "/api/v2/tenants/ta/databases/db"
C = T + "/collections/5f1c0c5e-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "access", "resolve"),
    [
        ("GET", "/api/v2/heartbeat", Access.PUBLIC, False),
        ("GET", "/api/v2/healthcheck", Access.PUBLIC, False),
        ("GET", "/api/v2/version", Access.PUBLIC, False),
        ("GET", "/api/v2", Access.PUBLIC, False),
        ("POST", "/api/v2/heartbeat", Access.ADMIN, False),
        ("GET", "/api/v2/auth/identity", Access.SESSION, False),
        ("GET", "/api/v2/pre-flight-checks", Access.SESSION, False),
        ("POST", "/api/v2/reset", Access.ADMIN, False),
        ("POST", "/api/v2/tenants", Access.ADMIN, False),
        ("PATCH", "/api/v2/tenants/ta", Access.ADMIN, False),
        ("GET", "/api/v2/tenants/ta", Access.READ, False),
        ("GET", "/api/v2/tenants/ta/databases", Access.READ, False),
        ("POST", "/api/v2/tenants/ta/databases", Access.ADMIN, False),
        ("GET", T, Access.READ, False),
        ("DELETE", T, Access.ADMIN, False),
        ("GET", T + "/collections", Access.READ, False),
        ("POST", T + "/collections", Access.WRITE, False),
        ("GET", T + "/collections_count", Access.READ, False),
        ("GET", T + "/collections/by-id/abc", Access.READ, False),
        ("GET", T + "/collections/name", Access.READ, False),
        ("DELETE", T + "/collections/name", Access.WRITE, False),
        ("PUT", C, Access.WRITE, True),
        ("GET", C + "/count", Access.READ, True),
        ("POST", C + "/get", Access.READ, True),
        ("POST", C + "/query", Access.READ, True),
        ("POST", C + "/search", Access.READ, True),
        ("POST", C + "/add", Access.WRITE, True),
        ("POST", C + "/update", Access.WRITE, True),
        ("POST", C + "/upsert", Access.WRITE, True),
        ("POST", C + "/delete", Access.WRITE, True),
        ("POST", C + "/fork", Access.WRITE, True),
        ("POST", C + "/functions/attach", Access.WRITE, True),
        ("GET", "/api/v2/collections/crn:abc", Access.BLOCKED, False),
        ("GET", "/chromactl/v1/hold", Access.AGENT, False),
        ("GET", "/api/v2/something-new", Access.ADMIN, False),
        ("GET", "/metrics", Access.ADMIN, False),
    ],
)
def test_classify(method: str, path: str, access: Access, resolve: bool) -> None:
    route = classify(method, path)
    assert route.access is access
    assert route.resolve_collection is resolve


def test_record_routes_carry_tenant_database_and_collection() -> None:
    route = classify("POST", C + "/query")
    assert (route.tenant, route.database) == ("ta", "db")
    assert route.collection.startswith("5f1c0c5e")
    assert route.operation == "collection_query"
    assert route.reach is Reach.DATABASE
    assert not route.is_write


def test_unknown_routes_need_an_admin_over_everything() -> None:
    route = classify("DELETE", "/api/v2/tenants/ta")
    assert route.access is Access.ADMIN
    assert route.reach is Reach.EVERYTHING


def test_writes_are_held_reads_are_not() -> None:
    assert classify("POST", C + "/add").is_write
    assert classify("POST", "/api/v2/tenants").is_write
    assert not classify("POST", C + "/get").is_write
    assert not classify("GET", "/chromactl/v1/hold").is_write


def test_docs_route_table_is_the_generated_one() -> None:
    """docs/gateway.md shows ``python -m chromactl.gateway.routes --markdown``; regenerate it on change."""
    from pathlib import Path

    from chromactl.gateway.routes import markdown_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text()
    begin, end = "<!-- routes table: begin -->\n", "<!-- routes table: end -->"
    shown = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert shown == markdown_table()


def test_operations_keep_their_names() -> None:
    from chromactl.gateway.routes import Operation, classify

    op = classify("POST", "/api/v2/tenants/t/databases/d/collections/c/add").operation
    assert op is Operation.COLLECTION_ADD
    assert op == "collection_add" and f"{op}" == "collection_add" and str(op) == "collection_add"
