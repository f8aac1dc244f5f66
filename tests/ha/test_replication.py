"""A standby follows the primary's acknowledged writes into its own Chroma, with the same ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chart.fake_kube import FakeCluster
from tests.chart.servers import serve
from tests.gateway.helpers import Chroma, run_chroma, wait_until
from tests.ha.helpers import LEASE, HaPod, add_pod_object, free_ha_port, run_ha_pod

DB = "/api/v2/tenants/default_tenant/databases/default_database"
A, B = "127.0.0.11", "127.0.0.12"


@pytest.fixture
def kube() -> Iterator[tuple[FakeCluster, str]]:
    cluster = FakeCluster()
    for name in (A, B):
        add_pod_object(cluster, name)
    with serve(cluster.handler()) as url:
        yield cluster, url


@pytest.fixture
def chromas(tmp_path: Path) -> Iterator[tuple[Chroma, Chroma]]:
    with run_chroma(tmp_path / "a") as a, run_chroma(tmp_path / "b") as b:
        yield a, b


def holder(cluster: FakeCluster) -> str | None:
    lease = cluster.find("Lease", LEASE, "default")
    return (lease or {}).get("spec", {}).get("holderIdentity") or None


def add(pod: HaPod, cid: str, ids: list[str]) -> httpx.Response:
    body = {"ids": ids, "embeddings": [[float(len(i)), 1.0] for i in ids], "documents": ids}
    return httpx.post(f"{pod.url}{DB}/collections/{cid}/add", json=body, timeout=30)


def test_standby_applies_writes_with_the_same_ids(kube, chromas, tmp_path: Path) -> None:
    cluster, url = kube
    port = free_ha_port()
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b:
            created = httpx.post(f"{a.url}{DB}/collections", json={"name": "docs"}, timeout=30)
            assert created.status_code == 200, created.text
            cid = created.json()["id"]
            assert add(a, cid, ["x1", "x2", "x3"]).status_code == 201
            deleted = httpx.post(f"{a.url}{DB}/collections/{cid}/delete", json={"ids": ["x2"]}, timeout=30)
            assert deleted.status_code == 200
            wait_until(lambda: b.node.state.applied == a.node.log.last_index, 15, "the standby to catch up")
            direct = httpx.post(f"{chromas[1].url}{DB}/collections/{cid}/get", json={}, timeout=30).json()
            assert sorted(direct["ids"]) == ["x1", "x3"]
            # writes to a standby are refused, reads are served
            refused = add(b, cid, ["y"])
            assert refused.status_code == 503 and refused.json()["error"] == "NotPrimary"
            assert httpx.get(f"{b.url}{DB}/collections/{cid}/count", timeout=30).json() == 2
            assert cluster.get("Pod", A, "default")["metadata"]["labels"]["chromactl.io/role"] == "primary"
            wait_until(
                lambda: cluster.get("Pod", B, "default")["metadata"]["labels"].get("chromactl.io/role")
                == "standby",
                10,
                "the standby's label",
            )
