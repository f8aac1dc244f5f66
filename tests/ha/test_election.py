"""Leader election on a Lease of the fake API server: one primary, takeover only after the lease
lapsed by the standby's own clock, fencing before that, release on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chromactl.errors import ConfigError
from chromactl.ha.election import LeaderElector, Timings
from chromactl.ha.kubeapi import KubeApi
from tests.chart.fake_kube import FakeCluster
from tests.chart.servers import serve

NAMESPACE = "vectors"
LEASE = "chroma-chromadb-primary"
TIMINGS = Timings(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, KubeApi]]:
    fake = FakeCluster()
    with serve(fake.handler()) as host:
        yield fake, KubeApi(f"http://{host}", NAMESPACE, timeout_s=2.0)


class Candidate:
    def __init__(self, api: KubeApi, name: str, clock: Clock) -> None:
        self.events: list[str] = []
        self.elector = LeaderElector(
            api,
            LEASE,
            name,
            TIMINGS,
            on_started_leading=lambda: self.events.append("started"),
            on_stopped_leading=lambda: self.events.append("stopped"),
            clock=clock,
        )


def holder(fake: FakeCluster) -> str:
    return str(fake.get("Lease", LEASE, NAMESPACE)["spec"]["holderIdentity"])


def test_the_first_candidate_leads_and_the_second_waits(cluster: tuple[FakeCluster, KubeApi]) -> None:
    fake, api = cluster
    clock = Clock()
    a, b = Candidate(api, "pod-0", clock), Candidate(api, "pod-1", clock)
    assert a.elector.step() and not b.elector.step()
    assert holder(fake) == "pod-0" and b.elector.holder == "pod-0"
    for _ in range(20):  # the holder renews every retry period; the standby never takes over
        clock.now += TIMINGS.retry_period_s
        assert a.elector.step() and not b.elector.step()
    assert a.events == ["started"] and b.events == []
    spec = fake.get("Lease", LEASE, NAMESPACE)["spec"]
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0


def test_a_standby_takes_a_lapsed_lease_only_after_the_full_duration_by_its_own_clock(
    cluster: tuple[FakeCluster, KubeApi],
) -> None:
    fake, api = cluster
    clock_a, clock_b = Clock(), Clock()
    clock_b.now = 50_000.0  # the two pods' clocks share no origin
    a, b = Candidate(api, "pod-0", clock_a), Candidate(api, "pod-1", clock_b)
    assert a.elector.step()
    assert not b.elector.step()  # b sees the record now (its time 50000)
    # pod-0 dies: it renews no more. b retries every period and takes over only at 15 s.
    waited = 0.0
    while not b.elector.step():
        clock_b.now += TIMINGS.retry_period_s
        waited += TIMINGS.retry_period_s
        assert waited <= 20
    assert waited >= TIMINGS.lease_duration_s
    assert holder(fake) == "pod-1" and b.events == ["started"]
    assert fake.get("Lease", LEASE, NAMESPACE)["spec"]["leaseTransitions"] == 1


def test_a_renewal_seen_by_the_standby_restarts_its_wait(cluster: tuple[FakeCluster, KubeApi]) -> None:
    fake, api = cluster
    clock = Clock()
    a, b = Candidate(api, "pod-0", clock), Candidate(api, "pod-1", clock)
    a.elector.step()
    b.elector.step()
    clock.now += 14
    a.elector.step()  # renewed just before it would lapse
    clock.now += 1
    assert not b.elector.step()  # 15 s since b first looked, but the record changed at 14 s
    clock.now += 14
    assert not b.elector.step()
    clock.now += 1
    assert b.elector.step() and holder(fake) == "pod-1"


def test_the_primary_fences_itself_before_anyone_may_take_over(cluster: tuple[FakeCluster, KubeApi]) -> None:
    """The API server goes away: the primary stops leading at the renew deadline, and no standby
    may take the lease before the lease duration: the primary is fenced first, always."""
    fake, api = cluster
    clock = Clock()
    a, b = Candidate(api, "pod-0", clock), Candidate(api, "pod-1", clock)
    a.elector.step()
    b.elector.step()
    renewed = clock.now
    fake.down = True
    fenced_at = None
    while fenced_at is None:
        clock.now += TIMINGS.retry_period_s
        if not a.elector.step():
            fenced_at = clock.now
        assert not b.elector.step()
    assert a.events == ["started", "stopped"]
    assert fenced_at - renewed <= TIMINGS.renew_deadline_s + TIMINGS.retry_period_s
    assert fenced_at - renewed < TIMINGS.lease_duration_s
    fake.down = False  # back before the lease lapsed: the lease is still pod-0's
    assert not b.elector.step()
    assert a.elector.step() and a.events == ["started", "stopped", "started"]


def test_without_fencing_a_partitioned_primary_would_overlap_a_new_one(
    cluster: tuple[FakeCluster, KubeApi],
) -> None:
    """What the check of the timings prevents: a renew deadline as long as the lease lets a
    standby lead while the old primary still believes it leads."""
    _, api = cluster
    with pytest.raises(ConfigError, match="must exceed renew_deadline_s"):
        LeaderElector(
            api, LEASE, "pod-0", Timings(lease_duration_s=10, renew_deadline_s=10, retry_period_s=2)
        )
    with pytest.raises(ConfigError, match="more than one try"):
        LeaderElector(api, LEASE, "pod-0", Timings(lease_duration_s=15, renew_deadline_s=2, retry_period_s=2))


def test_two_candidates_writing_at_once_get_one_lease(cluster: tuple[FakeCluster, KubeApi]) -> None:
    fake, api = cluster
    clock = Clock()
    candidates = [Candidate(api, f"pod-{i}", clock) for i in range(3)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(3)

    def go(c: Candidate) -> None:
        barrier.wait()
        results[c.elector.identity] = c.elector.step()

    threads = [threading.Thread(target=go, args=(c,)) for c in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results.values()) == 1  # create or replace: the API server lets one through
    assert results[holder(fake)]


def test_release_hands_over_at_the_next_try(cluster: tuple[FakeCluster, KubeApi]) -> None:
    fake, api = cluster
    clock = Clock()
    a, b = Candidate(api, "pod-0", clock), Candidate(api, "pod-1", clock)
    a.elector.step()
    b.elector.step()
    a.elector.release()
    assert a.events == ["started", "stopped"] and not a.elector.leading
    clock.now += TIMINGS.retry_period_s  # no lease duration to wait: the holder is empty
    assert b.elector.step() and holder(fake) == "pod-1"


def test_a_stale_write_is_refused_by_the_api_server(cluster: tuple[FakeCluster, KubeApi]) -> None:
    from chromactl.ha.kubeapi import Conflict

    fake, api = cluster
    clock = Clock()
    Candidate(api, "pod-0", clock).elector.step()
    stale = api.get_lease(LEASE)
    assert stale is not None
    Candidate(api, "pod-0", clock).elector.step()  # renewed: a new resourceVersion
    with pytest.raises(Conflict, match="the object has been modified"):
        api.replace_lease(stale, {**stale["spec"], "holderIdentity": "intruder"})
    assert holder(fake) == "pod-0"
