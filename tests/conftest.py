from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Suites whose files share one process: the security suite (a package-scoped capture of every
#: secret it uses), the console's (one stack and one browser for all its files).
ONE_PROCESS = ("tests/security/", "tests/console/")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n`` (make test): each test file runs whole in one process, so that its
    module fixtures (servers, pods) start once, and each suite of :data:`ONE_PROCESS` runs
    whole in one (xdist's ``loadfile``, with those suites as one file)."""
    from xdist.scheduler import LoadFileScheduling

    class SuiteScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((suite for suite in ONE_PROCESS if path.startswith(suite)), path)

    return SuiteScheduling(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
