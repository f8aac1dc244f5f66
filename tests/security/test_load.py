"""Load and faults, short versions (the long ones: ``make soak``, bench/soak/results.md).

The gateway runs as its own process in front of a Chroma process; 64 concurrent clients
send a mix of ``query``, ``get`` and ``add`` through it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.security.loadgen import (
    TOKEN,
    ChromaProcess,
    GatewayProcess,
    OutageJudge,
    Sample,
    make_collection,
    missing_acked,
    run_load,
    stack,
)

pytestmark = pytest.mark.slow

CONCURRENCY = 64


def test_mixed_load_no_errors_and_flat_memory(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    with stack(tmp_path) as (_, gw):
        cid = make_collection(gw.url, "load")
        # Warm-up: pools, caches and the allocator reach their working size.
        _, problems = asyncio.run(run_load(gw.url, cid, duration_s=3, concurrency=CONCURRENCY, seed=1))
        assert problems == []
        result, problems = asyncio.run(
            run_load(gw.url, cid, duration_s=10, concurrency=CONCURRENCY, rss_of=gw.rss_kib, seed=2)
        )
    assert problems == [], problems[:20]
    assert sum(result.statuses().values()) > CONCURRENCY
    first, last = result.rss[0][1], result.rss[-1][1]
    record_property("latency", json.dumps({op: result.percentiles(op) for op in ("query", "get", "add")}))
    record_property("rss_kib", json.dumps(result.rss))
    assert last < first * 1.10, f"gateway RSS grew from {first} to {last} KiB"


def test_chroma_killed_under_load(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    chroma = ChromaProcess(tmp_path / "chroma")
    gw = GatewayProcess(tmp_path, chroma.url)
    chroma.start()
    gw.start()
    times: dict[str, float] = {}
    judge = OutageJudge()
    try:
        cid = make_collection(gw.url, "faults")
        pid = gw.proc.pid if gw.proc else 0
        t0 = time.monotonic()

        stop = threading.Event()

        def fault() -> None:
            try:
                time.sleep(3)
                times["killed"] = time.monotonic() - t0
                judge.killed.set()
                chroma.kill()
                time.sleep(3)
                chroma.start()  # same port, same data
                times["back"] = time.monotonic() - t0
                time.sleep(6)  # traffic after Chroma is back, however long its start took
            finally:
                stop.set()

        killer = threading.Thread(target=fault)
        killer.start()
        result, problems = asyncio.run(
            run_load(
                gw.url,
                cid,
                duration_s=120,
                concurrency=CONCURRENCY,
                request_timeout_s=10,
                judge=judge,
                seed=3,
                stop=stop,
            )
        )
        killer.join()
        record_property("chroma_errors", json.dumps(judge.chroma_errors[:50]))
        # Never hangs, and every refusal is the gateway's Chroma-shaped 503 with Retry-After;
        # Chroma's own errors after its restart are passed on untouched (see OutageJudge).
        assert problems == [], problems[:20]
        statuses = result.statuses()
        assert statuses[503] > 0, f"the outage was not seen: {statuses}"
        assert all(at >= times["killed"] for at, *_ in judge.chroma_errors), judge.chroma_errors[:5]
        # Recovers without a gateway restart: once Chroma is back for a few seconds, the
        # gateway refuses nothing more and every answer is Chroma's again, most of them 2xx.
        assert gw.proc is not None and gw.proc.pid == pid and gw.proc.poll() is None
        settle = times["back"] + 3
        late = [s for s in result.samples if s.at >= settle]
        assert late, "no traffic after Chroma came back"
        refused = [(s.at, s.status, s.detail) for s in late if s.status == 0 or s.origin == "gateway"]
        assert refused == [], refused[:10]
        assert sum(s.status // 100 == 2 for s in late) > len(late) // 2, statuses
        recovered = [s.at for s in result.samples if s.at >= times["back"] and s.status // 100 == 2]
        assert recovered and recovered[0] - times["back"] < 3
        # No acknowledged write is lost.
        assert result.acked
        assert missing_acked(chroma.url, cid, result.acked) == set()
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            assert c.get("/api/v2/heartbeat").status_code == 200
    finally:
        gw.stop()
        chroma.stop()


def test_outage_judge_tells_gateway_faults_from_chroma_errors() -> None:
    judge = OutageJudge()
    chroma_500 = b'{"error":"InternalError","message":"Error in compaction"}'
    gw = {"x-chromactl-origin": "gateway", "retry-after": "1"}

    def verdict(status: int, origin: str, headers: dict[str, str], body: bytes) -> str | None:
        return judge(Sample("add", status, 0.01, 4.0, "", origin), headers, body)

    assert verdict(200, "chroma", {}, b"{}") is None
    assert verdict(503, "gateway", gw, b'{"error":"Unavailable","message":"down"}') is None
    assert verdict(503, "gateway", {"x-chromactl-origin": "gateway"}, b'{"error":"U","message":"m"}')
    # Before the kill, Chroma's own 500 is a problem; after it, Chroma's recovery errors pass.
    assert verdict(500, "chroma", {}, chroma_500) is not None
    judge.killed.set()
    assert verdict(500, "chroma", {}, chroma_500) is None
    assert judge.chroma_errors == [(4.0, "add", 500, chroma_500.decode())]
    # A 5xx the gateway made up, or a Chroma answer of another shape, stays a problem.
    assert verdict(500, "gateway", gw, chroma_500) is not None
    assert verdict(502, "chroma", {}, b"<html>bad gateway</html>") is not None
    assert verdict(404, "chroma", {}, b'{"error":"NotFound","message":"x"}') is not None
