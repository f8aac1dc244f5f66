"""Chroma's own client tests through the gateway's fast path: the same counts as against Chroma.

The tests shipped in the ``chromadb`` 1.5.9 wheel (``chromadb/test/``) run in their integration
mode (``CHROMA_INTEGRATION_TEST_ONLY``: clients over HTTP to ``CHROMA_SERVER_HOST``, reset
allowed), seeded, in a virtualenv of their own (``requirements/client-tests.txt``: they
need pytest 8, FastAPI and OpenTelemetry's FastAPI instrumentation). They run twice: against a
Chroma, and against a gateway with the fast path in front of another Chroma. The tests send no
credentials, so that gateway takes none. The two runs must end with the same counts: passed,
failed, skipped. A few tests run in-process against a local SQLite whatever the mode; they count
the same in both runs.

``make test`` runs :data:`PROFILE`, the API tests (about 45 s a run). ``make soak`` runs the
whole directory, property tests included (``CHROMA_CLIENT_SUITE=full``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.gateway.helpers import Chroma, client_tests_gateway, run_chroma, run_client_tests, run_gateway

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venvs" / "client-tests"
#: chromadb/test/ in that virtualenv (whichever Python made it).
TESTS = next(
    iter(sorted(VENV.glob("lib/python3.*/site-packages/chromadb/test"))), VENV / "chromadb-test-missing"
)
#: The bounded profile: every kind of API call, and the errors the clients raise.
PROFILE = [
    "api/test_collection.py",
    "api/test_count_api.py",
    "api/test_limit_offset.py",
    "api/test_list_databases.py",
    "api/test_get_database.py",
    "api/test_delete_database.py",
    "api/test_invalid_update.py",
    "api/test_types.py",
]
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)\b")


def run_suite(url: str, workdir: Path) -> tuple[dict[str, int], str]:
    """Chroma's tests against ``url``: the counts by outcome, and the end of their output."""
    full = os.environ.get("CHROMA_CLIENT_SUITE") == "full"
    paths = [str(TESTS / p) for p in PROFILE]
    if full:
        # The whole directory has modules that cannot be imported here (pandas, a distributed
        # Chroma, two test_schema.py): they fail to collect alike in both runs, and the rest
        # runs. test_cli.py starts Chroma's own CLI server in a process it never stops (the
        # run would wait for it at exit), and tests the local CLI, not a client over HTTP.
        paths = ["--continue-on-collection-errors", f"--ignore={TESTS / 'test_cli.py'}", str(TESTS)]
    done = run_client_tests(VENV / "bin" / "python", url, workdir, paths, timeout=7200 if full else 900)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    counts = {
        kind.removesuffix("s") if kind.startswith("error") else kind: int(n)
        for n, kind in _COUNT.findall(summary)
    }
    return counts, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.timeout(7800)
def test_chromas_client_tests_count_the_same_through_the_fast_path(tmp_path: Path) -> None:
    assert TESTS.is_dir(), f"{VENV} is missing Chroma's tests: run `make deps`"
    with run_chroma(tmp_path / "direct") as chroma:
        direct, direct_out = run_suite(chroma.url, tmp_path)
    assert direct.get("passed", 0) >= 20, direct_out
    with run_chroma(tmp_path / "behind") as chroma:
        through, through_out = _through_gateway(chroma, tmp_path)
    assert through == direct, f"direct {direct}, through the gateway {through}:\n{through_out}"


def _through_gateway(chroma: Chroma, workdir: Path) -> tuple[dict[str, int], str]:
    with run_gateway(client_tests_gateway(chroma.url)) as gw:
        assert gw.gateway.fast is not None
        return run_suite(gw.url, workdir)
