"""The build order of ``scripts/images.py build``: a base before the images on it, the images
on a built base at the same time (up to ``--jobs``), and a failed build stops the run."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
from scripts import images


def builder(monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> tuple[images.Builder, list[tuple]]:
    opts = argparse.Namespace(
        standins=True, local_bases=True, only=None, released=False, builder="buildah", build_arg=None
    )
    b = images.Builder(opts)
    events: list[tuple] = []
    lock = threading.Lock()

    def fake_buildah(image: images.Image, args: dict[str, str]) -> None:
        with lock:
            events.append(("start", image.name, time.monotonic()))
        time.sleep(0.05)
        if image.name == fail:
            raise SystemExit(f"buildah failed: {image.name}")
        with lock:
            events.append(("end", image.name, time.monotonic()))

    monkeypatch.setattr(b, "_buildah", fake_buildah)
    return b, events


def test_bases_first_then_the_images_on_them_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    b, events = builder(monkeypatch)
    b.build_all(b.wanted(), jobs=3)
    started = {name: t for kind, name, t in events if kind == "start"}
    ended = {name: t for kind, name, t in events if kind == "end"}
    assert set(started) == set(b.table) == b.built
    for image in b.table.values():
        if image.base:
            assert started[image.name] >= ended[image.base], f"{image.name} started before its base"
    on_base = [i.name for i in b.table.values() if i.base == "base-python"]
    running = max(sum(1 for n in on_base if started[n] <= started[m] < ended[n]) for m in on_base)
    assert running >= 2, "the images on the built base were built one at a time"
    assert running <= 3, "more builds at once than --jobs"


def test_one_job_builds_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    b, events = builder(monkeypatch)
    b.build_all(b.wanted(), jobs=1)
    kinds = [kind for kind, _, _ in events]
    assert kinds == ["start", "end"] * len(b.table)


def test_a_failed_build_stops_the_run_and_nothing_on_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    b, events = builder(monkeypatch, fail="upstream-chroma")
    with pytest.raises(SystemExit, match="upstream-chroma"):
        b.build_all(b.wanted(), jobs=3)
    assert "e2e-client" not in {name for _, name, _ in events}
    assert "upstream-chroma" not in b.built
