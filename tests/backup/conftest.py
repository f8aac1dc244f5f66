from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromactl.backup.repository.repository import Repository

from .helpers import make_bucket, moto_s3, run_chroma, s3_repository, seed


@pytest.fixture(scope="session")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped Chroma data directory with two collections (2500 and 300 records)."""
    base = tmp_path_factory.mktemp("seeded")
    with run_chroma(base / "data") as chroma:
        seed(chroma.url, {"alpha": 2500, "beta": 300})
    return base / "data"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_repo_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_endpoint, bucket)
    return f"s3://{bucket}/snapshots"


def s3_repo(url: str, endpoint: str) -> Repository:
    repo: Repository = s3_repository(url, endpoint)
    return repo
