"""The audit log: one line per authorization decision, every field there, no secret or payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, WRITER_TOKEN, token_config
from tests.gateway.helpers import Chroma, run_gateway

pytestmark = pytest.mark.slow

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DOCUMENT = "TOP-SECRET-DOCUMENT-4242"
VECTOR = [0.123456789, 0.987654321, 0.5]
FIELDS = {
    "time",
    "logger",
    "request_id",
    "principal",
    "operation",
    "class",
    "tenant",
    "database",
    "collection",
    "method",
    "path",
    "client",
    "outcome",
    "status",
    "records",
    "request_bytes",
    "response_bytes",
    "duration_ms",
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def audit_counts(metrics_url: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(httpx.get(metrics_url).text):
        for s in family.samples:
            if s.name == "chromactl_gateway_audit_events_total":
                out[(s.labels["class"], s.labels["outcome"])] = s.value
    return out


def traffic(url: str, name: str) -> str:
    """A collection made, two records written, a denied write, a read, a public and an
    unauthenticated call; returns the collection id."""
    resp = httpx.post(
        f"{url}{DB}/collections",
        json={"name": name, "get_or_create": True},
        headers={**bearer(ADMIN_TOKEN), "X-Request-Id": f"make-{name}"},
    )
    assert resp.status_code == 200, resp.text
    cid = str(resp.json()["id"])
    add = {"ids": ["a", "b"], "embeddings": [VECTOR, VECTOR], "documents": [DOCUMENT, DOCUMENT]}
    assert (
        httpx.post(f"{url}{DB}/collections/{cid}/add", json=add, headers=bearer(WRITER_TOKEN)).status_code
        == 201
    )
    denied = httpx.post(f"{url}{DB}/collections/{cid}/add", json=add, headers=bearer(READER_TOKEN))
    assert denied.status_code == 403
    query = {"query_embeddings": [VECTOR], "n_results": 1}
    assert httpx.post(
        f"{url}{DB}/collections/{cid}/query", json=query, headers=bearer(READER_TOKEN)
    ).is_success
    assert httpx.get(f"{url}/api/v2/heartbeat").is_success
    assert httpx.get(f"{url}{DB}/collections", headers=bearer("ck_not-a-token")).status_code == 401
    return cid


def test_writes_and_denials_are_audited_with_every_field_and_nothing_secret(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.log"
    with run_gateway(token_config(chroma, secrets_dir, audit={"file": str(audit)})) as gw:
        cid = traffic(gw.url, "audited")
        assert gw.metrics_url is not None
        counts = audit_counts(gw.metrics_url)
    got = lines(audit)
    # admin and writes only (reads are off by default); the public and the 401 call decided nothing
    assert [(g["operation"], g["outcome"]) for g in got] == [
        ("create_collection", "allowed"),
        ("collection_add", "allowed"),
        ("collection_add", "denied"),
    ]
    for line in got:
        assert set(line) >= FIELDS, FIELDS - set(line)
        assert line["logger"] == "chromactl.audit"
    made, written, refused = got
    assert made["request_id"] == "make-audited" and made["collection"] == "audited"
    assert made["principal"] == {"name": "admin", "method": "token", "role": "admin"}
    assert (made["class"], made["tenant"], made["database"]) == (
        "write",
        "default_tenant",
        "default_database",
    )
    assert written["principal"]["name"] == "writer" and written["collection"] == cid
    assert (written["status"], written["records"]) == (201, 2)
    assert written["request_bytes"] > 0 and written["duration_ms"] > 0
    assert refused["principal"] == {"name": "reader", "method": "token", "role": "reader"}
    assert (refused["status"], refused["reason"]) == (403, "forbidden")
    assert "reason" not in written
    # nothing secret and nothing from a payload, anywhere in the stream
    text = audit.read_text()
    for secret in (ADMIN_TOKEN, WRITER_TOKEN, READER_TOKEN, "ck_not-a-token", DOCUMENT, "0.123456789"):
        assert secret not in text, secret
    # every decision counted, the unaudited read too
    assert counts[("write", "allowed")] >= 2 and counts[("write", "denied")] >= 1
    assert counts[("read", "allowed")] >= 1


def test_reads_are_audited_when_asked_and_nothing_when_off(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    reads = tmp_path / "reads.log"
    with run_gateway(token_config(chroma, secrets_dir, audit={"file": str(reads), "reads": True})) as gw:
        traffic(gw.url, "audited-reads")
    query = [g for g in lines(reads) if g["operation"] == "collection_query"]
    assert len(query) == 1 and query[0]["class"] == "read" and query[0]["principal"]["name"] == "reader"
    off = tmp_path / "off.log"
    with run_gateway(token_config(chroma, secrets_dir, audit={"file": str(off), "enabled": False})) as gw:
        traffic(gw.url, "not-audited")
    assert not off.exists() or off.read_text() == ""
