"""A standby follows the primary's acknowledged writes into its own Chroma, with the same ids."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from chromactl.ha import contract
from chromactl.journal import decode
from tests.gateway.helpers import wait_until
from tests.ha.conftest import Chromas, Kube
from tests.ha.helpers import DB, HaPod, free_ha_port, run_ha_pod

A, B = "127.0.0.11", "127.0.0.12"


def add(pod: HaPod, cid: str, ids: list[str]) -> httpx.Response:
    body = {"ids": ids, "embeddings": [[float(len(i)), 1.0] for i in ids], "documents": ids}
    return httpx.post(f"{pod.url}{DB}/collections/{cid}/add", json=body, timeout=30)


def test_standby_applies_writes_with_the_same_ids(kube: Kube, chromas: Chromas, tmp_path: Path) -> None:
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
            # the client's retry opens a new connection, which the Service sends to the primary
            assert refused.headers["connection"] == "close"
            assert httpx.get(f"{b.url}{DB}/collections/{cid}/count", timeout=30).json() == 2
            assert cluster.get("Pod", A, "default")["metadata"]["labels"]["chromactl.io/role"] == "primary"
            wait_until(
                lambda: (
                    cluster.get("Pod", B, "default")["metadata"]["labels"].get("chromactl.io/role")
                    == "standby"
                ),
                10,
                "the standby's label",
            )
            # the metrics the chart's alerts read
            ra, rb = a.node.metrics.registry, b.node.metrics.registry
            wait_until(
                lambda: rb.get_sample_value("chromactl_ha_role", {"role": "standby"}) == 1,
                10,
                "the standby's role metric",
            )
            assert ra.get_sample_value("chromactl_ha_role", {"role": "primary"}) == 1
            assert ra.get_sample_value("chromactl_ha_role", {"role": "standby"}) == 0
            assert rb.get_sample_value("chromactl_ha_lease_holder", {"pod": A}) == 1
            # the gauges follow every quarter second
            wait_until(lambda: rb.get_sample_value("chromactl_ha_lag_entries") == 0, 10, "no lag")
            wait_until(
                lambda: ra.get_sample_value("chromactl_ha_standbys_in_sync") == 1, 10, "one standby in sync"
            )
            assert ra.get_sample_value("chromactl_ha_failovers_total") == 0


def test_continuous_backup_journals_what_the_standby_applies(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """With continuous backup on, the primary's journal spool and its replication log get the
    same writes: backups keep working from the primary with high availability."""
    _, url = kube
    port = free_ha_port()
    journal_dir = tmp_path / "journal"
    backup = {
        "target": f"file://{tmp_path / 'repo'}",
        "continuous": {"enabled": True, "journal_dir": str(journal_dir)},
    }
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa", backup=backup) as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b:
            cid = httpx.post(f"{a.url}{DB}/collections", json={"name": "docs"}, timeout=30).json()["id"]
            assert add(a, cid, ["j1", "j2"]).status_code == 201
            wait_until(lambda: b.node.state.applied == a.node.log.last_index, 15, "the standby")
    spooled = [e for f in sorted(journal_dir.glob("*.journal")) for e in decode(f.read_bytes())[0]]
    assert [e.kind for e in spooled] == ["catalog", "records"]
    assert spooled[1].collection == cid and b'"j1"' in spooled[1].body


def test_a_synchronous_write_counts_a_standby_from_its_stream_and_waits_for_its_ack(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """With no standby, a synchronous write is refused at once; a standby whose stream is open
    but has not acked yet is waited for (not refused), and its ack releases the write."""
    _, url = kube
    port = free_ha_port()
    sync = {"synchronous": True, "synchronous_timeout_s": 2.0}
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa", **sync) as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        created = httpx.post(f"{a.url}{DB}/collections", json={"name": "sync"}, timeout=30)
        assert created.status_code == 503, created.text
        assert "no standby is connected" in created.json()["message"]

        stream_url = f"{a.url}{contract.STREAM}"
        last = a.node.log.last_index
        follow = {"after": last, "term": a.node.state.term_at(last), "pod": "s1"}
        with httpx.stream("GET", stream_url, params=follow, timeout=30) as s:
            assert s.status_code == 200
            wait_until(lambda: "s1" in a.node.standbys, 5, "the stream to count")
            # connected but silent: the write waits the synchronous timeout, then says so
            waited = httpx.post(f"{a.url}{DB}/collections", json={"name": "sync2"}, timeout=30)
            assert waited.status_code == 503
            assert "no standby confirmed it within 2s" in waited.json()["message"]

            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(
                    httpx.post, f"{a.url}{DB}/collections", json={"name": "sync3"}, timeout=30
                )
                wait_until(lambda: a.node.log.last_index >= 3, 10, "the write to reach the log")
                ack = {"pod": "s1", "applied": a.node.log.last_index, "lag_s": 0.0}
                assert httpx.post(f"{a.url}{contract.ACK}", json=ack, timeout=10).status_code == 200
                assert pending.result(timeout=10).status_code == 200
