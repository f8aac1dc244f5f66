"""Snapshot under a continuous writer into the big collection → wipe → restore: every
record back, bit for bit."""

from __future__ import annotations

import shutil
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chromactl.backup import GatewayHold, Repository, create_snapshot, restore
from chromactl.backup.snapshot import cut

from .conftest import s3_repo
from .helpers import (
    DB,
    HoldingProxy,
    Writer,
    add,
    embedding,
    get_all,
    record,
    run_chroma,
    seed,
)

pytestmark = pytest.mark.slow


def f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def l2(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


class LateHold:
    """The gateway's hold; the first one is requested only after ``wait()`` returns:
    writes that land between the catch-up and the hold (here: enough for Chroma to
    rewrite the collection's HNSW files) make it give the hold back and take another."""

    def __init__(self, inner: GatewayHold, wait: Callable[[], None]) -> None:
        self.inner = inner
        self.wait = wait
        self.waited_s = 0.0
        self.entered = 0

    def __enter__(self) -> LateHold:
        if not self.entered:
            self.wait()
        self.entered += 1
        self.inner.__enter__()
        self.waited_s = self.inner.waited_s
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)


STATIC, BUSY = 600, 3100  # the writer adds to the big collection


def round_trip(
    tmp_path: Path,
    repo: Repository,
    *,
    hnsw_rewritten_before_hold: bool = False,
) -> None:
    data = tmp_path / "data"
    with run_chroma(data) as chroma:
        ids = seed(chroma.url, {"static": STATIC, "busy": BUSY})
        with HoldingProxy(chroma.url) as proxy:
            writer = Writer(proxy.url, ids["busy"]).start()
            try:
                while len(writer.acked) < 10 and not writer.errors:
                    writer._stop.wait(0.05)
                hold: GatewayHold | LateHold = GatewayHold(proxy.url, "admin-token")
                if hnsw_rewritten_before_hold:

                    def more_than_a_sync_threshold() -> None:
                        start = len(writer.acked)  # 21 batches of 50 > sync_threshold (1000)
                        while len(writer.acked) < start + 21 and not writer.errors:
                            writer._stop.wait(0.05)

                    hold = LateHold(hold, more_than_a_sync_threshold)
                result = create_snapshot(data, repo, hold, chroma_version="1.5.9")
                # keep writing after the cut: none of this may appear in the restore
                after = len(writer.acked)
                while len(writer.acked) < after + 10 and not writer.errors:
                    writer._stop.wait(0.05)
            finally:
                writer.stop()
            assert not writer.errors
            assert len(proxy.hold_log) == result.phases["hold_attempts"]
        source_counts = {
            name: int(httpx.get(f"{chroma.url}{DB}/collections/{cid}/count").text)
            for name, cid in ids.items()
        }
    assert result.outcome == "success"
    assert source_counts["busy"] > BUSY + 50 * after  # the writer went on after the cut

    manifest = repo.resolve(str(result.snapshot_id))
    counts = {c.name: c.count for c in manifest.collections}
    live_in_snapshot = counts["busy"] - BUSY
    assert live_in_snapshot % 50 == 0, "a batch was split by the cut"
    batches_in = live_in_snapshot // 50
    assert 10 <= batches_in <= after, "the cut is not between the acknowledged batches"
    if hnsw_rewritten_before_hold:  # the first hold found the HNSW files rewritten: given back
        busy_segment_files = [f.path for f in manifest.files if f.path.endswith("data_level0.bin")]
        assert busy_segment_files and result.phases["hold_attempts"] >= 2
        assert result.phases["hold_given_back_s"] > 0

    shutil.rmtree(data)  # wipe
    outcome = restore(repo, data, snapshot=str(result.snapshot_id))
    assert outcome.outcome == "restored"

    expected = {
        "static": [f"static-{i}" for i in range(STATIC)],
        "busy": [f"busy-{i}" for i in range(BUSY)]
        + [i for batch in writer.acked[:batches_in] for i in batch],
    }
    with run_chroma(data) as restored:
        for name, cid in ids.items():
            got = get_all(restored.url, cid)
            assert sorted(got["ids"]) == sorted(expected[name])
            by_id = dict(zip(got["ids"], range(len(got["ids"])), strict=True))
            for rid in expected[name]:
                k = by_id[rid]
                want = record(rid)
                assert f32(got["embeddings"][k]) == f32(want["embedding"]), rid
                assert got["documents"][k] == want["document"]
                assert got["metadatas"][k] == want["metadata"]
            # queries: the nearest neighbours are the exact ones
            vectors = [embedding(rid) for rid in expected[name][::97][:12]]
            resp = httpx.post(
                f"{restored.url}{DB}/collections/{cid}/query",
                json={"query_embeddings": vectors, "n_results": 5, "include": ["distances"]},
                timeout=60,
            )
            resp.raise_for_status()
            for q, ids_found in zip(vectors, resp.json()["ids"], strict=True):
                truth = sorted(expected[name], key=lambda r, q=q: l2(embedding(r), q))[:5]
                assert ids_found == truth
        # the restored database takes writes (a broken copy fails every later add)
        add(restored.url, ids["busy"], ["after-restore-0", "after-restore-1"])
        count = httpx.get(f"{restored.url}{DB}/collections/{ids['busy']}/count").text
        assert int(count) == len(expected["busy"]) + 2


def test_round_trip_local(tmp_path: Path) -> None:
    round_trip(tmp_path, Repository(str(tmp_path / "repo")))


def test_round_trip_hnsw_rewritten_between_catch_up_and_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cut, "REHOLD_MIN_BYTES", 0)  # give back a hold for any persisted segment
    round_trip(tmp_path, Repository(str(tmp_path / "repo")), hnsw_rewritten_before_hold=True)


def test_round_trip_s3(tmp_path: Path, s3_repo_url: str, s3_endpoint: str) -> None:
    round_trip(tmp_path, s3_repo(s3_repo_url, s3_endpoint))


def test_chroma_records_each_rewrite_before_the_write_answers(tmp_path: Path) -> None:
    """What the cut relies on (see chromactl.backup.snapshot.cut): Chroma rewrites a collection's HNSW
    files only inside a write, and records the new generation before that write answers;
    nothing changes afterwards until the next write."""
    data = tmp_path / "data"
    with run_chroma(data) as chroma:
        ids = seed(chroma.url, {"gens": 0})
        conn = sqlite3.connect(data / "chroma.sqlite3", timeout=30)
        seg = conn.execute(
            "SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'", (ids["gens"],)
        ).fetchone()[0]
        files = data / seg

        def state() -> tuple[object, ...]:
            gen = cut.generations(conn).get(seg)
            stats = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files.glob("*"))
            return gen, tuple(stats)

        seen = []
        for batch in range(25):  # 100 records each: a rewrite every 10 batches
            add(chroma.url, ids["gens"], [f"gens-{batch * 100 + i}" for i in range(100)])
            right_after = state()
            time.sleep(0.2)
            assert state() == right_after, f"the files or generation moved after batch {batch} answered"
            seen.append(right_after[0])
        conn.close()
    assert seen[8] is None or seen[8] < seen[9]  # the 10th batch's answer came after its rewrite
    assert len({g for g in seen if g is not None}) == 2  # rewritten after 1000 and 2000 records
