"""Fixtures of the in-process high-availability tests: the fake API server and two real Chromas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.fake_kube import FakeCluster
from tests.chart.servers import serve
from tests.gateway.helpers import Chroma, run_chroma
from tests.ha.helpers import add_pod_object

PODS = ("127.0.0.11", "127.0.0.12")
Kube = tuple[FakeCluster, str]
Chromas = tuple[Chroma, Chroma]


@pytest.fixture
def kube() -> Iterator[tuple[FakeCluster, str]]:
    cluster = FakeCluster()
    for name in PODS:
        add_pod_object(cluster, name)
    with serve(cluster.handler()) as url:
        yield cluster, url


@pytest.fixture
def chromas(tmp_path: Path) -> Iterator[tuple[Chroma, Chroma]]:
    with run_chroma(tmp_path / "a") as a, run_chroma(tmp_path / "b") as b:
        yield a, b
