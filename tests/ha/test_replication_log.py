"""The replication log: numbering, reopening, retention, gaps, and the stream's framing."""

from __future__ import annotations

from pathlib import Path

import pytest

from chromactl.ha import replication_log
from chromactl.ha.replication_log import Heartbeat, LogGap, Record, ReplicationLog, decode_records
from chromactl.ha.state import NodeState
from chromactl.journal import Entry


def entry(n: int, size: int = 10) -> Entry:
    return Entry(t=float(n), origin="p", n=n, kind="records", op="add", collection="c", body=b"x" * size)


def test_numbered_in_order_and_kept_across_a_reopen(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    assert [log.append(entry(i), "t1") for i in range(3)] == [1, 2, 3]
    log.close()
    again = ReplicationLog(tmp_path)
    assert (again.first_index, again.last_index, again.last_term) == (1, 3, "t1")
    assert [r.index for r in again.read(1)] == [2, 3]
    assert again.append(entry(9), "t2") == 4


def test_a_standby_refuses_a_gap(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path, base=10)
    log.add(Record(11, "t", entry(11)))
    with pytest.raises(LogGap):
        log.add(Record(13, "t", entry(13)))


def test_old_segments_go_past_the_retained_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replication_log, "SEGMENT_BYTES", 4096)
    log = ReplicationLog(tmp_path, retained_bytes=3 * 4096)
    for i in range(200):
        log.append(entry(i, 500), "t")
    assert log.last_index == 200
    assert log.first_index > 1
    assert sum(p.stat().st_size for p in log.segments()) <= 4 * 4096
    kept = list(log.read(log.first_index - 1, segments=log.segments()))
    assert [r.index for r in kept] == list(range(log.first_index, 201))


def test_a_partial_record_waits_for_the_rest() -> None:
    whole = Record(1, "t", entry(1)).encode()
    stream = Heartbeat(5).encode() + whole + whole[:7]
    items, used = decode_records(stream)
    assert items == [Heartbeat(5), Record(1, "t", items[1].entry)]  # type: ignore[union-attr]
    assert used == len(stream) - 7


def test_terms_say_where_two_logs_agree() -> None:
    state = NodeState(history=[("a", 1), ("b", 40)])
    assert state.term_at(0) == ""
    assert state.term_at(39) == "a"
    assert state.term_at(40) == "b"
    assert state.start_term(70) != "b" and state.term_at(70) == state.term


def test_the_stream_reads_what_a_standby_lacks_from_the_newest_records(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    for i in range(10):
        log.append(entry(i), "t")
    last, data = log.read_encoded(7, 256)
    items, used = decode_records(data)
    assert last == 10 and used == len(data)
    assert [r.index for r in items if isinstance(r, Record)] == [8, 9, 10]
    assert log.read_encoded(3, 2)[0] == 5
    assert [r.index for r in log.read(3, limit=2)] == [4, 5]
    assert log.read_encoded(10, 256) == (10, b"")
