"""An object storage call that never returns (a black-holed connection) still ends the
operation at its time limit, with a message naming the setting."""

from __future__ import annotations

import threading
import time

import pytest

from chromactl.backup.store import Repository, RepositoryError, RetryPolicy


def test_a_stalled_call_fails_at_the_time_limit() -> None:
    repo = Repository("memory://stalled/snapshots", retry=RetryPolicy(attempts=3, time_limit_s=0.5))
    assert not repo.is_local
    never = threading.Event()
    start = time.monotonic()
    with pytest.raises(RepositoryError) as err:
        repo.retry("upload files/x", lambda: never.wait(30))
    took = time.monotonic() - start
    assert 0.4 < took < 5
    assert "did not finish to upload files/x within backup.op_timeout_s=0.5s" in str(err.value)


def test_answers_and_errors_of_a_call_in_time_come_back_unchanged() -> None:
    repo = Repository("memory://quick/snapshots", retry=RetryPolicy(attempts=1, time_limit_s=5))
    assert repo.retry("list", lambda: ["a", "b"]) == ["a", "b"]
    with pytest.raises(FileNotFoundError):  # not transient: raised as it is
        repo.retry("read", lambda: (_ for _ in ()).throw(FileNotFoundError("gone")))
