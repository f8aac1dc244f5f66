from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Suites whose files share one session (a package-scoped capture of every secret they use).
ONE_PROCESS = ("tests/security/",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (make test), each test file runs whole in one process, so that its
    module fixtures (servers, pods) start once; the suites of :data:`ONE_PROCESS` run whole in one."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = next((suite for suite in ONE_PROCESS if path.startswith(suite)), path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
