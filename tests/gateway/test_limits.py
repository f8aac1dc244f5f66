"""Rate limits and quotas per credential and per tenant (docs/limits.md): who is refused, how,
what the others see, and that a refused write stores nothing."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
import yaml
from chromadb.errors import QuotaError, RateLimitError

from chromactl.config import LimitRule
from chromactl.gateway.limits_table import Refused, SharedTable

from .conftest import ADMIN_TOKEN, READER_TOKEN, WRITER_TOKEN, token_config
from .helpers import Chroma, RunningGateway, run_gateway

DB = "/api/v2/tenants/default_tenant/databases/default_database"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _limited(chroma: Chroma, secrets_dir: Path, tmp_path: Path, fast_path: bool = True, **limits: Any) -> Any:
    config = token_config(chroma, secrets_dir)
    config["chroma"] = {"url": chroma.url, "persist_path": str(chroma.path / "data")}
    gateway = config["gateway"]
    assert isinstance(gateway, dict)
    gateway["fast_path"] = fast_path
    gateway["limits"] = {"enabled": True, "state_dir": str(tmp_path / "limits"), **limits}
    return run_gateway(config)


def test_a_noisy_client_gets_429_with_retry_after_and_the_others_are_served(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    rules = {"credentials": {"reader": {"requests_per_second": 5, "burst": 5}}}
    with _limited(chroma, secrets_dir, tmp_path, **rules) as gw:
        gw: RunningGateway
        statuses: list[int] = []
        others: list[int] = []
        stop = threading.Event()

        def other() -> None:
            with gw.client(**_auth(WRITER_TOKEN)) as c:
                while not stop.is_set():
                    others.append(c.get(f"{DB}/collections").status_code)

        thread = threading.Thread(target=other)
        thread.start()
        started = time.monotonic()
        with gw.client(**_auth(READER_TOKEN)) as noisy:
            for _ in range(40):
                resp = noisy.get(f"{DB}/collections")
                statuses.append(resp.status_code)
                if resp.status_code == 429:
                    refused = resp
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
        # It ignores Retry-After, yet gets no more than its rate: each refused connection waits.
        assert statuses[:5] == [200] * 5 and statuses.count(429) >= 10, statuses
        assert statuses.count(200) <= 5 + 5 * elapsed + 1, (statuses, elapsed)
        assert refused.json()["error"] == "RateLimitError"
        assert int(refused.headers["retry-after"]) >= 1
        assert others and set(others) == {200}
        # Chroma's Python client raises its own RateLimitError for it.
        host, port = gw.url.removeprefix("http://").split(":")
        with pytest.raises(RateLimitError, match="credential reader: over 5 requests per second"):
            client = chromadb.HttpClient(host=host, port=int(port), headers=_auth(READER_TOKEN))
            for _ in range(10):
                client.list_collections()
        metrics = httpx.get(gw.metrics_url or "", timeout=5).text
        assert (
            'chromactl_gateway_limited_requests_total{limit="requests_per_second",scope="credential"}'
            in metrics
        )


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "asgi"])
def test_a_refused_connection_is_not_read_until_its_wait_passed(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path, fast_path: bool
) -> None:
    """A client that ignores Retry-After and sends again at once on the same connection is
    read only once a token is there; other connections are served meanwhile."""
    rules = {"credentials": {"reader": {"requests_per_second": 0.5, "burst": 1}}}
    with (
        _limited(chroma, secrets_dir, tmp_path, fast_path, **rules) as gw,
        gw.client(**_auth(READER_TOKEN)) as noisy,
        gw.client(**_auth(WRITER_TOKEN)) as other,
    ):
        assert noisy.get(f"{DB}/collections").status_code == 200
        assert noisy.get(f"{DB}/collections").status_code == 429
        refused_at = time.monotonic()
        # the other credential's connection is answered while the refused one waits
        assert other.get(f"{DB}/collections").status_code == 200
        assert time.monotonic() - refused_at < 1.5
        again = noisy.get(f"{DB}/collections")
        waited = time.monotonic() - refused_at
        # a token comes every 2 s: the refused connection was read once it was there
        assert again.status_code == 200 and waited >= 1.8, (again.status_code, waited)


def test_with_pause_refused_connections_off_a_refused_client_is_read_at_once(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    rules = {"credentials": {"reader": {"requests_per_second": 0.2, "burst": 1}}}
    with (
        _limited(chroma, secrets_dir, tmp_path, pause_refused_connections=False, **rules) as gw,
        gw.client(**_auth(READER_TOKEN)) as noisy,
    ):
        assert noisy.get(f"{DB}/collections").status_code == 200
        # a token every 5 s: each request sent at once is read and refused at once
        assert [noisy.get(f"{DB}/collections").status_code for _ in range(5)] == [429] * 5


def test_records_per_minute_refuse_the_write_that_would_cross_them(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    rules = {"credentials": {"writer": {"records_per_minute": 100}}}
    with _limited(chroma, secrets_dir, tmp_path, **rules) as gw, gw.client(**_auth(WRITER_TOKEN)) as c:
        cid = c.post(f"{DB}/collections", json={"name": f"rpm-{uuid.uuid4().hex[:6]}"}).json()["id"]

        def add(n: int, start: int) -> httpx.Response:
            ids = [f"r-{i}" for i in range(start, start + n)]
            return c.post(f"{DB}/collections/{cid}/add", json={"ids": ids, "embeddings": [[1.0, 2.0]] * n})

        assert add(60, 0).is_success
        refused = add(60, 60)
        assert refused.status_code == 429 and refused.json()["error"] == "RateLimitError"
        # 40 records left of 100 a minute: 20 more take 12 s.
        assert 11 <= int(refused.headers["retry-after"]) <= 13
        assert c.get(f"{DB}/collections/{cid}/count").json() == 60


def test_quotas_refuse_what_would_cross_them_and_nothing_past_it_is_stored(
    chroma: Chroma, secrets_dir: Path, tmp_path: Path
) -> None:
    tenant = f"quota-{uuid.uuid4().hex[:6]}"
    rules = {"tenants": {tenant: {"max_collections": 2, "max_records_per_collection": 10}}}
    base = f"/api/v2/tenants/{tenant}/databases/main"
    with _limited(chroma, secrets_dir, tmp_path, **rules) as gw, gw.client(**_auth(ADMIN_TOKEN)) as c:
        assert c.post("/api/v2/tenants", json={"name": tenant}).is_success
        assert c.post(f"/api/v2/tenants/{tenant}/databases", json={"name": "main"}).is_success
        first = c.post(f"{base}/collections", json={"name": "one"}).json()["id"]
        assert c.post(f"{base}/collections", json={"name": "two"}).is_success
        third = c.post(f"{base}/collections", json={"name": "three"})
        assert third.status_code == 400 and third.json()["error"] == "QuotaError", third.text
        assert "holds 2 collections, its limit is 2" in third.json()["message"]
        assert sorted(x["name"] for x in c.get(f"{base}/collections").json()) == ["one", "two"]

        def write(op: str, ids: list[str]) -> httpx.Response:
            body = {"ids": ids, "embeddings": [[0.5, 0.5]] * len(ids)}
            return c.post(f"{base}/collections/{first}/{op}", json=body)

        assert write("add", [f"a-{i}" for i in range(8)]).is_success
        over = write("add", [f"b-{i}" for i in range(3)])
        assert over.status_code == 400 and over.json()["error"] == "QuotaError"
        assert "would hold 11 records" in over.json()["message"]
        # Existing ids do not grow the collection: an upsert of them and two new ones fits.
        assert write("upsert", [*[f"a-{i}" for i in range(8)], "c-1", "c-2"]).is_success
        assert c.get(f"{base}/collections/{first}/count").json() == 10
        host, port = gw.url.removeprefix("http://").split(":")
        client = chromadb.HttpClient(
            host=host, port=int(port), tenant=tenant, database="main", headers=_auth(ADMIN_TOKEN)
        )
        with pytest.raises(QuotaError):
            client.get_collection("one").add(ids=["d-1"], embeddings=[[0.1, 0.2]])
        assert c.get(f"{base}/collections/{first}/count").json() == 10


def test_limits_change_without_a_restart(chroma: Chroma, secrets_dir: Path, tmp_path: Path) -> None:
    rules_file = tmp_path / "limits.yaml"
    rules_file.write_text(yaml.safe_dump({"credentials": {"reader": {"requests_per_second": 1000}}}))
    # refusals read at once, so that a burst of requests shows the rule in force
    with (
        _limited(chroma, secrets_dir, tmp_path, file=str(rules_file), pause_refused_connections=False) as gw,
        gw.client(**_auth(READER_TOKEN)) as c,
    ):
        assert all(c.get(f"{DB}/collections").status_code == 200 for _ in range(20))
        rules_file.write_text(
            yaml.safe_dump({"credentials": {"reader": {"requests_per_second": 1, "burst": 1}}})
        )
        time.sleep(2.5)  # the file is looked at every 2 s
        statuses = [c.get(f"{DB}/collections").status_code for _ in range(5)]
        assert statuses.count(429) >= 4, statuses
        rules_file.write_text("credentials: {reader: {requests_per_second: -1}}\n")  # refused: the rules stay
        time.sleep(2.5)
        statuses = [c.get(f"{DB}/collections").status_code for _ in range(4)]
        assert statuses.count(429) >= 3, statuses  # still one a second


def test_the_counters_are_shared_by_the_gateway_processes_of_the_pod(tmp_path: Path) -> None:
    """Two processes' tables on one file: one bucket, and in-flight requests of both."""
    first, second = SharedTable(tmp_path / "t", 0), SharedTable(tmp_path / "t", 1)
    rule = LimitRule(requests_per_second=1, burst=3, concurrent_requests=2)
    now = 1000.0
    first.take("credential:a", rule, 0, now)
    second.take("credential:a", rule, 0, now)
    with pytest.raises(Refused) as over:
        first.take("credential:a", rule, 0, now)
    assert over.value.limit == "concurrent_requests"
    first.done("credential:a", rule)
    second.take("credential:a", rule, 0, now)  # the third token of the burst
    with pytest.raises(Refused) as empty:
        first.take("credential:a", LimitRule(requests_per_second=1, burst=3), 0, now)
    assert empty.value.limit == "requests_per_second" and empty.value.retry_after == pytest.approx(1.0)
    first.take("credential:a", LimitRule(requests_per_second=1, burst=3), 0, now + 1.0)
    # A process that starts again (a restarted worker) drops its in-flight requests.
    SharedTable(tmp_path / "t", 1)
    first.take("credential:a", LimitRule(concurrent_requests=1), 0, now + 1.0)


def test_with_several_workers_a_limit_holds_for_the_pod(tmp_path: Path) -> None:
    """Each request on a new connection: the kernel spreads them over both workers, and the
    burst of 10 is the pod's, not 10 per worker."""
    from .helpers import run_chroma as run_chroma_server
    from .test_workers import TEAM_A, workers_pod

    limits = {"enabled": True, "credentials": {"team-a": {"requests_per_second": 0.2, "burst": 10}}}
    with (
        run_chroma_server(tmp_path / "chroma") as chroma,
        workers_pod(tmp_path, chroma, 2, limits=limits) as pod,
    ):
        statuses = [
            httpx.get(
                f"{pod.url}/api/v2/tenants/team-a/databases",
                headers={**_auth(TEAM_A), "Connection": "close"},
                timeout=10,
            ).status_code
            for _ in range(30)
        ]
        assert len(pod.workers()) == 2
    # team-a's tenant does not exist: Chroma answers 404 to the requests the limit lets through.
    assert statuses.count(429) in (19, 20), statuses
