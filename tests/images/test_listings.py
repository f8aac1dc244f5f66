"""JSON listings read from buildah: ``null`` (empty storage), ``[]``, one item or several.

The files under tests/fixtures/buildah are buildah 1.28's own output, recorded on an empty
storage, with one working container and one image, and with two containers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scripts import images

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "buildah"


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("containers-none.json", 0),  # null
        ("images-none.json", 0),  # []
        ("containers-one.json", 1),
        ("images-one.json", 1),
        ("containers-two.json", 2),
    ],
)
def test_recorded_listings_read_as_lists(name: str, count: int) -> None:
    items = images.json_items((RECORDED / name).read_text())
    assert isinstance(items, list) and len(items) == count
    assert all("id" in item for item in items)


def test_a_lone_object_and_nothing_at_all_read_as_lists() -> None:
    assert images.json_items('{"id": "a"}') == [{"id": "a"}]
    assert images.json_items("") == [] and images.json_items("  \n") == []
    assert images.json_items(None) == []


def test_anything_else_is_an_error_that_shows_it() -> None:
    with pytest.raises(ValueError, match="got: '\\[1, 2\\]'"):
        images.json_items("[1, 2]")
    with pytest.raises(ValueError, match="got: '\"text\"'"):
        images.json_items('"text"')


def fake_buildah(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, containers: str, tagged: str) -> Path:
    """A ``buildah`` first on PATH that prints recorded listings and logs every other call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    script = bin_dir / "buildah"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1 $2" in\n'
        f'  "containers --json") cat {RECORDED / containers} ;;\n'
        f'  "images --json") cat {RECORDED / tagged} ;;\n'
        f'  *) echo "$@" >> {log} ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_prune_on_empty_storage_removes_nothing_and_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_buildah(tmp_path, monkeypatch, "containers-none.json", "images-none.json")
    images.prune_replaced()
    assert log.read_text().splitlines() == ["rmi --prune"]


def test_prune_removes_only_the_pod_runners_container_of_a_replaced_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_buildah(tmp_path, monkeypatch, "containers-two.json", "images-one.json")
    images.prune_replaced()
    podrunner = images.json_items((RECORDED / "containers-two.json").read_text())[0]
    assert podrunner["containername"].startswith("podrunner-")
    assert log.read_text().splitlines() == [f"rm {podrunner['id']}", "rmi --prune"]
