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


def _chroma_shaped_503(sample: Sample, headers: dict[str, str], body: bytes) -> str | None:
    """While Chroma is down: a 2xx (it answered before) or the gateway's 503."""
    if sample.status // 100 == 2:
        return None
    if sample.status != 503:
        return f"unexpected {sample.status}: {body[:300]!r}"
    if headers.get("x-chromactl-origin") != "gateway":
        return f"a 503 not made by the gateway: {body[:300]!r}"
    if not headers.get("retry-after", "").isdigit():
        return "503 without Retry-After"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"503 body is not JSON: {body[:300]!r}"
    if set(doc) != {"error", "message"}:
        return f"503 body is not Chroma-shaped: {doc}"
    return None


def test_chroma_killed_under_load(tmp_path: Path) -> None:
    chroma = ChromaProcess(tmp_path / "chroma")
    gw = GatewayProcess(tmp_path, chroma.url)
    chroma.start()
    gw.start()
    times: dict[str, float] = {}
    try:
        cid = make_collection(gw.url, "faults")
        pid = gw.proc.pid if gw.proc else 0
        t0 = time.monotonic()

        stop = threading.Event()

        def fault() -> None:
            try:
                time.sleep(3)
                times["killed"] = time.monotonic() - t0
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
                judge=_chroma_shaped_503,
                seed=3,
                stop=stop,
            )
        )
        killer.join()
        # Never hangs, and every refusal is the gateway's Chroma-shaped 503 with Retry-After.
        assert problems == [], problems[:20]
        statuses = result.statuses()
        assert statuses[503] > 0, f"the outage was not seen: {statuses}"
        # Recovers without a gateway restart: once Chroma is back for a few seconds,
        # every request succeeds again.
        assert gw.proc is not None and gw.proc.pid == pid and gw.proc.poll() is None
        settle = times["back"] + 3
        late = [s for s in result.samples if s.at >= settle]
        assert late, "no traffic after Chroma came back"
        assert all(s.status // 100 == 2 for s in late), [
            (s.at, s.status) for s in late if s.status // 100 != 2
        ][:10]
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
