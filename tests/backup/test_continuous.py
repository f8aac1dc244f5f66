"""Continuous backup: the pod is killed under writes; restores to ``latest`` and to an
earlier second give exactly what Chroma had acknowledged (docs/backup.md, "Continuous
backup"). Against a local target and the S3 API server, with one and with two gateway
workers."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from chromactl.backup import NoHold, create_snapshot, restore
from chromactl.backup.continuous.shipper import Shipper
from chromactl.backup.continuous.timeline import Head, Timeline, TimelineError
from chromactl.backup.metrics import JournalMetrics
from chromactl.backup.operations.prune import prune
from chromactl.backup.recovery.replay import PointInTimeError, iso, plan
from chromactl.backup.repository.repository import Repository
from chromactl.config import RetentionSettings
from chromactl.journal import Entry, Spool

from .continuous_workload import DB, Op, State, Workload, model, nearest, read_state
from .helpers import ADMIN, free_port, gateway_process, run_chroma, s3_repository

pytestmark = pytest.mark.timeout(600)
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
#: The recovery point goal the tests hold the pod to.
MAX_LAG_S = 5.0
INITIAL = ["alpha", "beta", "gamma"]


def _backup_yaml(target: str, endpoint: str | None) -> str:
    text = f"backup:\n  target: {target}\n  continuous:\n    enabled: true\n    ship_interval_s: 0.5\n"
    if endpoint:
        text += f"  endpoint_url: {endpoint}\n"
    return text


def _bases(repo: Repository) -> list[float]:
    return [s.manifest.cut_at for s in repo.complete() if s.manifest and s.manifest.cut_at]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the gateway's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _restore(
    source: str, to: Path, to_time: str, env: dict[str, str], endpoint: str | None
) -> dict[str, Any]:
    """``chromactl restore --to-time``, as a user runs it."""
    cmd = [
        sys.executable,
        "-m",
        "chromactl",
        "restore",
        "--repo",
        source,
        "--data-dir",
        str(to),
        "--to-time",
        to_time,
    ]
    config = to.parent / f"restore-{to.name}.yaml"
    config.write_text(f"backup:\n  endpoint_url: {endpoint}\n" if endpoint else "{}\n")
    out = subprocess.run(
        [*cmd, "--config", str(config), "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return dict(json.loads(out.stdout))


def _same(state: State, expected: State) -> bool:
    return state == expected


def _check_queries(url: str, ids: dict[str, str], expected: State) -> None:
    """Nearest neighbours from the restored Chroma are the model's exact ones."""
    rng = random.Random(3)
    with httpx.Client(timeout=60) as client:
        listed = {c["name"]: c["id"] for c in client.get(f"{url}{DB}/collections").json()}
        for name, records in expected.items():
            if len(records) < 5:
                continue
            query = [rng.uniform(-1, 1) for _ in range(8)]
            got = client.post(
                f"{url}{DB}/collections/{listed[name]}/query",
                json={"query_embeddings": [query], "n_results": 3, "include": []},
            ).json()
            assert got["ids"][0] == nearest(expected, name, query), name


def _pause_point(ops: list[Op], after: float) -> tuple[float, int]:
    """A time inside a pause of the writer after ``after``, and the writes acknowledged by
    then."""
    for i in range(len(ops) - 1):
        if ops[i].acked > after and ops[i + 1].sent - ops[i].acked > 0.25:
            return ops[i].acked + 0.1, i + 1
    raise AssertionError("the writer never paused after the base")


@pytest.mark.parametrize(
    ("storage", "workers"),
    [pytest.param("local", 1, id="local-1-worker"), pytest.param("s3", 2, id="s3-2-workers")],
)
def test_killed_pod_restores_to_latest_and_to_an_earlier_second(
    tmp_path: Path, storage: str, workers: int, request: pytest.FixtureRequest
) -> None:
    env = dict(os.environ)
    endpoint = None
    if storage == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        target = request.getfixturevalue("s3_repo_url")
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"})
        repo = s3_repository(target, endpoint)
    else:
        target = str(tmp_path / "backups")
        repo = Repository(target)
    data = tmp_path / "data"
    port = free_port()
    rng = random.Random(int(time.time()))
    with (
        run_chroma(data) as chroma,
        gateway_process(
            tmp_path,
            chroma.url,
            port,
            persist_path=data,
            workers=workers,
            extra=_backup_yaml(target, endpoint),
            env={k: v for k, v in env.items() if k.startswith("AWS_")},
        ) as gateway,
    ):
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(headers=HEADERS, timeout=30) as client:
            ids = {
                name: client.post(f"{url}{DB}/collections", json={"name": name}).json()["id"]
                for name in INITIAL
            }
        # The pod asks for its first base snapshot as it starts.
        _wait(lambda: bool(_bases(repo)), 120, "the base snapshot")
        work = Workload(url, HEADERS, ids, seed=rng.randrange(1 << 30)).start()
        time.sleep(6)
        # A second snapshot mid-run: later points replay from it.
        with httpx.Client(headers=HEADERS, timeout=30) as client:
            client.post(f"{url}/chromactl/v1/backups").raise_for_status()
        _wait(lambda: len(_bases(repo)) >= 2, 120, "the second snapshot")
        time.sleep(rng.uniform(4, 8))
        # The pod dies: the gateway and Chroma at once, no shutdown.
        killed = time.time()
        gateway.send_signal(signal.SIGKILL)
        chroma.proc.send_signal(signal.SIGKILL)
        work.stop()
    assert len(work.ops) > 60, work.errors
    ops = work.ops
    first_base = min(_bases(repo))

    # latest: every write acknowledged more than MAX_LAG_S before the kill, nothing invented.
    latest = _restore(target, tmp_path / "latest", "latest", env, endpoint)
    with run_chroma(tmp_path / "latest") as restored:
        state = read_state(restored.url, ids)
        must = sum(1 for op in ops if op.acked < killed - MAX_LAG_S)
        matches = [k for k in range(len(ops), must - 1, -1) if _same(state, model(INITIAL, ops, k))]
        assert matches, (
            f"restored state is no prefix of the acknowledged writes from {must} to {len(ops)} "
            f"(restore said {latest})"
        )
        expected = model(INITIAL, ops, matches[0])
        _check_queries(restored.url, ids, expected)
        counts = latest["expected_counts"]
        live_ids = {c["name"]: c["id"] for c in httpx.get(f"{restored.url}{DB}/collections").json()}
        assert {name: counts.get(cid) for name, cid in live_ids.items()} == {
            name: len(recs) for name, recs in expected.items()
        }

    # An earlier second, between two writes and after the first base: exactly those before.
    when, k = _pause_point(ops, first_base)
    earlier = _restore(target, tmp_path / "earlier", iso(when), env, endpoint)
    assert earlier["to_time"] == iso(when)
    with run_chroma(tmp_path / "earlier") as restored:
        expected = model(INITIAL, ops, k)
        assert read_state(restored.url, ids) == expected
        _check_queries(restored.url, ids, expected)
    heads = Timeline(repo).epochs()
    assert heads and all(h.ended is None for h in heads), heads


# -- the parts: shipper, shipped journal, retention ------------------------------------------


class _Bases:
    """The backup service, as the shipper sees it: base snapshots asked for, cuts taken."""

    def __init__(self) -> None:
        self.asked = 0
        self.cut: float | None = None

    def request(self) -> None:
        self.asked += 1


def _shipper(tmp_path: Path, timeline: Timeline, bases: _Bases, clock: Any = time.time) -> Shipper:
    return Shipper(
        tmp_path / "journal",
        timeline,
        JournalMetrics(CollectorRegistry(), MAX_LAG_S),
        request_base=bases.request,
        last_cut=lambda: bases.cut,
        clock=clock,
    )


def _add(spool: Spool, t: float, collection: str, ids: list[str]) -> None:
    body = {"ids": ids, "embeddings": [[0.5] * 16 for _ in ids], "documents": ids, "metadatas": None}
    spool.append(t, "records", op="add", collection=collection, body=json.dumps(body).encode())


def test_a_break_ends_the_epoch_and_a_new_one_asks_for_its_base(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    timeline, bases = Timeline(repo), _Bases()
    spool = Spool(tmp_path / "journal", "w0")
    shipper = _shipper(tmp_path, timeline, bases)
    now = time.time()
    _add(spool, now - 3, "c1", ["a-1"])
    shipper.cycle()
    assert bases.asked == 1  # the first epoch's base
    spool.append(now - 2, "break", reason="POST /x: no answer from Chroma")
    _add(spool, now - 1, "c1", ["a-2"])
    shipper.cycle()
    first, second = timeline.epochs()
    assert first.ended == now - 2 and "no answer" in first.reason and first.segments == 1
    assert first.through == now - 2
    assert second.ended is None and second.started == now - 2 and second.segments == 1
    assert [e.json_body()["ids"] for e in timeline.read(first, 0, now)] == [["a-1"]]
    assert [e.json_body()["ids"] for e in timeline.read(second, 0, now)] == [["a-2"]]
    assert bases.asked == 2  # the new epoch's base
    bases.cut = time.time()
    shipper.cycle()
    assert bases.asked == 2  # the base came
    assert shipper.metrics.breaks._value.get() == 1


class _FlakyTimeline(Timeline):
    def __init__(self, repo: Repository) -> None:
        super().__init__(repo)
        self.failures = 1

    def write_segment(self, epoch: str, number: int, entries: list[Entry]) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError("the target is away")
        return super().write_segment(epoch, number, entries)


def test_entries_wait_while_the_target_fails_and_none_is_lost(tmp_path: Path) -> None:
    repo = Repository(str(tmp_path / "target"))
    timeline, bases = _FlakyTimeline(repo), _Bases()
    bases.cut = time.time() + 3600
    spool = Spool(tmp_path / "journal", "w0")
    shipper = _shipper(tmp_path, timeline, bases)
    now = time.time()
    _add(spool, now - 4, "c1", ["a-1"])
    shipper.cycle()
    assert shipper.metrics.lag._value.get() >= 4  # still waiting: the lag says so
    _add(spool, now - 0.5, "c1", ["a-2"])
    shipper.cycle()
    shipper.cycle()
    (head,) = timeline.epochs()
    assert [e.json_body()["ids"] for e in timeline.read(head, 0, now)] == [["a-1"], ["a-2"]]
    assert shipper.metrics.lag._value.get() == 0


def test_the_head_reaches_each_shipped_entry_soon_after_it(tmp_path: Path) -> None:
    """A restore to the moment just after the last write needs a head whose ``through`` is
    past it, without waiting for the next write or the heartbeat."""
    now = [1000.0]
    repo = Repository(str(tmp_path / "target"))
    timeline, bases = Timeline(repo), _Bases()
    shipper = Shipper(
        tmp_path / "journal",
        timeline,
        JournalMetrics(CollectorRegistry(), MAX_LAG_S),
        request_base=bases.request,
        last_cut=lambda: bases.cut,
        heartbeat_s=3600,
        clock=lambda: now[0],
    )
    spool = Spool(tmp_path / "journal", "w0")
    _add(spool, 1000.2, "c1", ["a-1"])
    now[0] = 1000.5
    shipper.cycle()
    assert timeline.epochs()[0].through < 1000.2  # entries appended late may still come
    now[0] = 1001.5
    shipper.cycle()
    (head,) = timeline.epochs()
    assert head.through >= 1000.2


def _snapshot_with_journal(tmp_path: Path, seeded_dir: Path) -> tuple[Repository, float, str]:
    """A snapshot of the seeded directory, then an epoch adding records to ``alpha``."""
    repo = Repository(str(tmp_path / "target"))
    result = create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    assert result.cut_at is not None
    conn = sqlite3.connect(seeded_dir / "chroma.sqlite3")
    alpha = conn.execute("SELECT id FROM collections WHERE name = 'alpha'").fetchone()[0]
    conn.close()
    spool = Spool(tmp_path / "journal", "w0")
    cut = result.cut_at
    # The shipper's clock: ten seconds after the cut, when the entries below are written.
    shipper = _shipper(tmp_path, Timeline(repo), _Bases(), clock=lambda: cut + 10)
    shipper.head.started = cut - 1
    for i in range(3):
        _add(spool, result.cut_at + 1 + i, alpha, [f"new-{i}"])
    shipper.cycle()
    return repo, result.cut_at, shipper.head.epoch


def test_a_time_before_every_base_is_refused_with_the_times_the_target_holds(
    tmp_path: Path, seeded_dir: Path
) -> None:
    repo, cut, _ = _snapshot_with_journal(tmp_path, seeded_dir)
    with pytest.raises(PointInTimeError) as info:
        plan(repo, cut - 60)
    assert f"cannot restore to {iso(cut - 60)}" in str(info.value)
    assert f"{iso(cut)} .. " in str(info.value)
    # The points it holds restore, each with the records written up to it.
    assert plan(repo, cut + 2.5).head is not None
    target = tmp_path / "restored"
    result = restore(repo, target, to_time=iso(cut + 2.5))
    assert result.journal_entries == 2
    rows = sqlite3.connect(target / "chroma.sqlite3").execute(
        "SELECT id FROM embeddings_queue WHERE id LIKE 'new-%' ORDER BY seq_id"
    )
    assert [r[0] for r in rows] == ["new-0", "new-1"]


def test_a_damaged_or_missing_segment_fails_the_restore_and_leaves_the_target(
    tmp_path: Path, seeded_dir: Path
) -> None:
    repo, _, epoch = _snapshot_with_journal(tmp_path, seeded_dir)
    segment = tmp_path / "target" / "journal" / epoch / "00000001.zst"
    target = tmp_path / "restored"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(TimelineError, match=f"{epoch}/00000001.zst"):
        restore(repo, target, to_time="latest", force=True)
    segment.unlink()
    with pytest.raises(TimelineError, match=r"missing segment\(s\) \[1\]"):
        restore(repo, target, to_time="latest", force=True)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_prune_removes_the_journal_only_with_the_last_base_it_replays_onto(
    tmp_path: Path, seeded_dir: Path
) -> None:
    repo = Repository(str(tmp_path / "target"))
    timeline = Timeline(repo)
    now = time.time()
    old = Head(
        "20200101T000000Z-000aaa", started=now - 7200, through=now - 3600, segments=0, ended=now - 3600
    )
    current = Head("20200101T010000Z-000bbb", started=now - 3600, through=now + 3600)
    for head in (old, current):
        timeline.write_head(head)
    for _ in range(2):
        create_snapshot(seeded_dir, repo, NoHold(), chroma_version="1.5.9")
    result = prune(repo, RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result.removed_epochs == [old.epoch]
    assert [h.epoch for h in timeline.epochs()] == [current.epoch]
    assert len(result.removed) == 1
