from __future__ import annotations

from pathlib import Path

import pytest

from tests.images.dockerfile import Dockerfile, parse

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "image"


@pytest.fixture(scope="session")
def chromactl_dockerfile() -> Dockerfile:
    return parse(IMAGE_DIR / "chromactl" / "Dockerfile")


@pytest.fixture(scope="session")
def chroma_dockerfile() -> Dockerfile:
    return parse(IMAGE_DIR / "chroma" / "Dockerfile")
