"""An object storage call that never returns (a black-holed connection) still ends the
operation at its time limit, with a message naming the setting."""

from __future__ import annotations

import threading
import time

import pytest

from chromactl.storage import RetryPolicy, StoreError, open_store


def test_a_stalled_call_fails_at_the_time_limit() -> None:
    store = open_store("memory://stalled/snapshots", retry=RetryPolicy(attempts=3, time_limit_s=0.5))
    assert not store.is_local
    store.save("files/x", b"x")
    never = threading.Event()
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.load_stream("files/x", lambda fh: never.wait(30), what="upload files/x")
    took = time.monotonic() - start
    assert 0.4 < took < 5
    assert "did not finish to upload files/x within backup.op_timeout_s=0.5s" in str(err.value)


def test_answers_and_errors_of_a_call_in_time_come_back_unchanged() -> None:
    store = open_store("memory://quick/snapshots", retry=RetryPolicy(attempts=1, time_limit_s=5))
    store.save("a/1", b"one")
    store.save("a/2", b"two")
    assert store.list("a", what="list") == ["1", "2"]
    with pytest.raises(FileNotFoundError):  # not transient: raised as it is
        store.load_stream("a/gone", lambda fh: fh.read(), what="read")
