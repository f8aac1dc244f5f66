"""Fencing, switchover, promotion only when caught up, and rebuilding a pod from the primary."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from chromactl.config import parse_config
from chromactl.ha.cli import prepare
from chromactl.ha.kubeapi import KubeApi
from chromactl.ha.replication_log import Record
from chromactl.journal import Entry
from tests.gateway.helpers import run_chroma, wait_until
from tests.ha.conftest import Chromas, Kube
from tests.ha.helpers import (
    API_TIMEOUT_S,
    DB,
    LEASE,
    TIMINGS,
    HaPod,
    add_pod_object,
    free_ha_port,
    run_ha_pod,
)

A, B = "127.0.0.11", "127.0.0.12"


class Writer:
    """Adds one record at a time to the primary, whichever pod that is (as a client retrying
    through the Service would); remembers every id a pod acknowledged, and by whom."""

    def __init__(self, pods: list[HaPod], cid: str) -> None:
        self.pods, self.cid = pods, cid
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            rid = f"w{n}"
            for pod in self.pods:
                try:
                    answer = httpx.post(
                        f"{pod.url}{DB}/collections/{self.cid}/upsert",
                        json={"ids": [rid], "embeddings": [[float(n), 1.0]]},
                        timeout=10,
                    )
                except httpx.HTTPError:
                    continue
                if answer.status_code == 200:
                    self.acked[rid] = pod.name
                    n += 1
                    break
            time.sleep(0.01)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)


def ids_in(pod: HaPod, cid: str) -> set[str]:
    found = httpx.post(f"{pod.url}{DB}/collections/{cid}/get", json={"include": []}, timeout=30).json()
    return set(found["ids"])


def create(pod: HaPod, name: str = "docs") -> str:
    answer = httpx.post(f"{pod.url}{DB}/collections", json={"name": name}, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_a_primary_that_cannot_renew_stops_taking_writes(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """The API server away longer than the renew deadline: the primary refuses writes (503
    NotPrimary) before any standby could take the lease, and no two pods ever take writes."""
    cluster, url = kube
    port = free_ha_port()
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b:
            cid = create(a)
            wait_until(lambda: b.node.state.applied == a.node.log.last_index, 15, "the standby")
            cluster.down = True
            outage = time.monotonic()
            both = []
            refused_at = None
            while time.monotonic() - outage < TIMINGS["lease_duration_s"] + 2:
                leaders = [p.name for p in (a, b) if p.node.accepts_writes()]
                both.append(len(leaders))
                if refused_at is None and not a.node.accepts_writes():
                    refused_at = time.monotonic() - outage
                time.sleep(0.05)
            assert max(both) <= 1
            assert refused_at is not None
            # fenced at the renew deadline, before the lease could lapse for anyone else
            assert refused_at < TIMINGS["lease_duration_s"] - API_TIMEOUT_S
            answer = httpx.post(
                f"{a.url}{DB}/collections/{cid}/upsert", json={"ids": ["z"], "embeddings": [[1.0, 1.0]]}
            )
            assert answer.status_code == 503 and answer.json()["error"] == "NotPrimary"
            cluster.down = False
            wait_until(lambda: any(p.node.accepts_writes() for p in (a, b)), 15, "a primary again")
            assert sum(p.node.accepts_writes() for p in (a, b)) == 1


def test_switchover_under_a_steady_writer_loses_nothing(kube: Kube, chromas: Chromas, tmp_path: Path) -> None:
    cluster, url = kube
    port = free_ha_port()
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b:
            cid = create(a)
            wait_until(lambda: B in a.node.standbys, 15, "the standby's first ack")
            with Writer([a, b], cid) as writer:
                wait_until(lambda: len(writer.acked) > 20, 20, "writes before the switchover")
                answer = httpx.post(f"{a.url}/chromactl/v1/ha/switchover", json={"to": B}, timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.json()["held_s"] <= 5
                wait_until(lambda: b.node.role == "primary", 15, "the standby to lead")
                before = len(writer.acked)
                wait_until(lambda: len(writer.acked) > before + 20, 20, "writes after the switchover")
            assert {writer.acked[i] for i in writer.acked} == {A, B}
            wait_until(lambda: a.node.state.applied == b.node.log.last_index, 15, "the old primary to follow")
            assert a.node.role != "primary" and not a.node.accepts_writes()
            assert set(writer.acked) <= ids_in(b, cid)
            assert set(writer.acked) <= ids_in(a, cid)
            holder = cluster.get("Lease", LEASE, "default")["spec"]["holderIdentity"]
            assert holder == B
            assert b.node.failovers == 0  # a switchover, not a failover (the alert stays quiet)


def test_a_standby_with_writes_not_applied_may_not_take_the_lease(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    _, url = kube
    port = free_ha_port()
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b:
            wait_until(lambda: b.node.eligible(), 15, "the standby to be caught up")
            follower = b.node.follower
            assert follower is not None

            class SlowApplier:
                async def apply(self, entry: Entry) -> None:
                    await asyncio.sleep(2.0)

            follower.applier = SlowApplier()  # type: ignore[assignment]
            entry = Entry(
                t=time.time(), origin="t", n=1, kind="records", op="add", collection="c", body=b"{}"
            )
            for i in range(2):
                b.loop.call_soon_threadsafe(follower.queue.put_nowait, Record(10**6 + i, "t", entry))
            time.sleep(0.1)
            assert not b.node.eligible()  # one being applied, one queued
            wait_until(lambda: follower.queue.empty() and not follower.applying, 10, "the queue to drain")


def test_a_standby_stopped_at_the_break_of_a_gone_primary_takes_the_lease(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """The primary lost track of a write (a break record: Chroma's answer to it never came, so
    it was never acknowledged) and is gone before the standby was rebuilt from it. The standby
    lacks nothing acknowledged: it leads, on its own data, instead of waiting for a primary
    that nobody can become."""
    _, url = kube
    port = free_ha_port()
    with (
        run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b,
        run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a,
    ):
        wait_until(lambda: b.node.role == "primary", 15, "the first pod to lead")
        wait_until(lambda: a.node.eligible(), 15, "the standby to be caught up")
        cid = create(b)
        added = {"ids": ["kept"], "embeddings": [[1.0, 2.0]]}
        assert httpx.post(f"{b.url}{DB}/collections/{cid}/add", json=added, timeout=30).is_success
        lost = Entry(t=time.time(), origin="t", n=1, kind="break", reason="add: no answer from Chroma")
        b.loop.call_soon_threadsafe(b.node.record, lost)
        follower = a.node.follower
        assert follower is not None
        wait_until(lambda: follower.stopped_at_break is not None, 15, "the standby to stop at the break")
        # the primary goes (its lease lapses; it handed nothing over)
        b.node.elector.give_up = lambda: False  # type: ignore[method-assign]
        b.server.should_exit = True
        b.thread.join(20)
        wait_until(lambda: a.node.role == "primary", 20, "the standby to lead on its own data")
        assert not a.node.state.rebuild
        got = httpx.post(f"{a.url}{DB}/collections/{cid}/get", json={}, timeout=30).json()
        assert got["ids"] == ["kept"]
        more = {"ids": ["after"], "embeddings": [[3.0, 4.0]]}
        assert httpx.post(f"{a.url}{DB}/collections/{cid}/add", json=more, timeout=30).is_success


def test_a_pod_that_cannot_follow_is_rebuilt_from_the_primary(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """A pod whose data predates high availability gets the primary's data, ids and all."""
    _, url = kube
    port = free_ha_port()
    with run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a:
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        cid = create(a)
        httpx.post(f"{a.url}{DB}/collections/{cid}/add", json={"ids": ["k"], "embeddings": [[1.0, 2.0]]})
        with run_chroma(tmp_path / "c") as c:  # data of its own, from before
            httpx.post(f"{c.url}{DB}/collections", json={"name": "stale"})
        settings = parse_config(
            {
                "chroma": {"persist_path": str(tmp_path / "c" / "data")},
                "ha": {
                    "enabled": True,
                    "lease_name": LEASE,
                    "pod_name": B,
                    "peer_url": f"http://{{pod}}:{port}",
                    "state_dir": str(tmp_path / "sc"),
                },
            }
        )
        assert prepare(settings, KubeApi(f"http://{url}", "default", timeout_s=API_TIMEOUT_S), wait_s=20)
        with run_chroma(tmp_path / "c") as c:
            names = [col["name"] for col in httpx.get(f"{c.url}{DB}/collections").json()]
            assert names == ["docs"]
            got = httpx.post(f"{c.url}{DB}/collections/{cid}/get", json={"include": ["embeddings"]}).json()
            assert got["ids"] == ["k"] and got["embeddings"] == [[1.0, 2.0]]
        # a second start keeps what it has: it can follow now
        assert not prepare(settings, KubeApi(f"http://{url}", "default", timeout_s=API_TIMEOUT_S), wait_s=20)


def test_three_pods_follow_the_new_primary_without_a_rebuild(
    kube: Kube, chromas: Chromas, tmp_path: Path
) -> None:
    """replicas: 3: after a switchover the other standby follows the new primary from where it
    is (their logs agree up to it), and the old primary does too."""
    cluster, url = kube
    c_name = "127.0.0.13"
    add_pod_object(cluster, c_name)
    port = free_ha_port()
    with (
        run_chroma(tmp_path / "c") as chroma_c,
        run_ha_pod(A, chromas[0], url, port, tmp_path / "sa") as a,
    ):
        wait_until(lambda: a.node.role == "primary", 15, "the first pod to lead")
        with (
            run_ha_pod(B, chromas[1], url, port, tmp_path / "sb") as b,
            run_ha_pod(c_name, chroma_c, url, port, tmp_path / "sc") as c,
        ):
            cid = create(a)
            httpx.post(f"{a.url}{DB}/collections/{cid}/add", json={"ids": ["a1"], "embeddings": [[1.0, 0.0]]})
            wait_until(lambda: {B, c_name} <= set(a.node.standbys), 15, "both standbys' acks")
            answer = httpx.post(f"{a.url}/chromactl/v1/ha/switchover", json={"to": B}, timeout=30)
            assert answer.status_code == 200, answer.text
            wait_until(lambda: b.node.role == "primary", 15, "the new primary")
            wait_until(lambda: {A, c_name} <= set(b.node.standbys), 20, "both to follow the new primary")
            added = httpx.post(
                f"{b.url}{DB}/collections/{cid}/add", json={"ids": ["b1"], "embeddings": [[0.0, 1.0]]}
            )
            assert added.status_code == 201
            for pod in (a, c):
                wait_until(lambda pod=pod: pod.node.state.applied == b.node.log.last_index, 15, f"{pod.name}")
                assert ids_in(pod, cid) == {"a1", "b1"}
                assert not pod.node.state.rebuild


def test_a_pod_starts_with_its_data_when_the_primary_is_gone(kube: Kube, tmp_path: Path) -> None:
    """The whole release was down: the Lease names a pod that no longer renews it. A pod's init
    step does not wait for it (a StatefulSet starting pods in order would never start the
    primary), it starts with its own data once the lease has not changed for its duration."""
    _, url = kube
    api = KubeApi(f"http://{url}", "default", timeout_s=API_TIMEOUT_S)
    api.create_lease(LEASE, {"holderIdentity": "127.0.0.19", "leaseDurationSeconds": 3})
    settings = parse_config(
        {
            "chroma": {"persist_path": str(tmp_path / "data")},
            "ha": {
                "enabled": True,
                "lease_name": LEASE,
                "pod_name": A,
                "peer_url": "http://{pod}:9",
                "state_dir": str(tmp_path / "state"),
                **TIMINGS,
            },
        }
    )
    started = time.monotonic()
    assert not prepare(settings, api, wait_s=60)
    took = time.monotonic() - started
    assert TIMINGS["lease_duration_s"] <= took < TIMINGS["lease_duration_s"] + 10
