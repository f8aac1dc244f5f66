"""The old clients' own tests through the gateway: each case ends as it ends against its own server.

The tests shipped in the ``chromadb`` 0.4.14 and 0.5.23 wheels (``chromadb/test/``) run in
their integration mode (``CHROMA_INTEGRATION_TEST_ONLY``: the client over HTTP to
``CHROMA_SERVER_HOST``, reset allowed), seeded, in those versions' venvs
(``requirements/migrate/``: their server with the FastAPI and pydantic of their day, and
their pytest and hypothesis). They run twice: against that version's own server
(``chromadb.app`` under uvicorn, as its image ran it), and through a gateway with legacy
clients on (``gateway.legacy_clients``, the default) in front of Chroma 1.5.9. Every case
must end the same way in both runs (passed, failed, skipped or error), except those in
:data:`ZERO_X_ONLY`, each listed with the 0.x server behaviour it asserts.

A few cases fail in both runs, and count the same: they need the default embedding model,
which is downloaded at run time (nothing is downloaded here), or they start servers or
clients of their own with settings the integration mode overrides.

``make test`` runs :data:`PROFILE`; ``make soak`` adds the concurrency tests and the
property tests (``CHROMA_CLIENT_SUITE=full``).
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.gateway.helpers import (
    chroma_0x_python,
    chroma_0x_venv,
    client_tests_gateway,
    run_chroma,
    run_chroma_0x,
    run_client_tests,
    run_gateway,
)

ROOT = Path(__file__).resolve().parents[2]
#: What ``make test`` runs of each version's tests (paths under ``chromadb/test/``): every
#: kind of API call against one server, and the errors the client raises (about a minute a run).
PROFILE = {
    "0.4.14": ["test_api.py", "test_client.py"],
    "0.5.23": [
        "test_api.py",
        "test_client.py",
        "api/test_collection.py",
        "api/test_get_database.py",
        "api/test_types.py",
        "client/test_database_tenant.py",
        "client/test_create_http_client.py",
    ],
}
#: What ``make soak`` adds: property tests, concurrency, and the rest of the client tests.
FULL = {
    "0.4.14": ["test_multithreaded.py", "property"],
    "0.5.23": [
        "api/test_limit_offset.py",
        "client/test_multiple_clients_concurrency.py",
        "client/test_http_client_v1_compatability.py",
        "test_multithreaded.py",
        "property",
    ],
}
#: Left out of the full run: it downloads other Chroma versions at run time (nothing is
#: downloaded here), and runs them in-process, never over HTTP.
NOT_RUN = ["property/test_cross_version_persist.py"]
#: Cases that assert what only a 0.x server did, with why the gateway cannot give it.
ZERO_X_ONLY = {
    "0.5.23": {
        "api/test_limit_offset.py::test_get_limit_offset[integration]": (
            "its collection names come from hypothesis, which finds names with a trailing newline "
            "('A00\\n'): 0.5's name check let one through (Python's `$` matches before a final "
            "newline), 1.x refuses such a name, and the gateway does not create a collection 1.x "
            "refuses"
        ),
    },
}


def shipped_tests(version: str) -> Path:
    return next(iter(sorted(chroma_0x_venv(version).glob("lib/python3.*/site-packages/chromadb/test"))))


def run_suite(version: str, url: str, workdir: Path) -> dict[str, str]:
    """The version's tests against ``url``: each case's outcome by its id (path under
    ``chromadb/test/`` and name)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "CHROMA_API_IMPL": "chromadb.api.fastapi.FastAPI",
        # No download at run time: the embedding model's fetch fails at once, the same in both runs.
        "HOME": str(workdir),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    base = shipped_tests(version)
    paths = PROFILE[version] + (FULL[version] if os.environ.get("CHROMA_CLIENT_SUITE") == "full" else [])
    report = workdir / "report.xml"
    args = [
        f"--junitxml={report}",
        *(f"--ignore={base / p}" for p in NOT_RUN),
        *(str(base / p) for p in paths),
    ]
    done = run_client_tests(chroma_0x_python(version), url, workdir, args, env=env, timeout=7200)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return outcomes(report, base)


def outcomes(report: Path, base: Path) -> dict[str, str]:
    """Each case in a JUnit report: ``path::name`` -> passed, failed, error or skipped."""
    found: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        path = module.split("chromadb/test/", 1)[-1] + ".py"
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
        key = f"{path}::{case.get('name')}"
        # a teardown error after a passed call is a second entry for the same case
        if found.get(key) in (None, "passed"):
            found[key] = "failed" if outcome == "failure" else outcome
    assert found, f"no cases in {report} (tests at {base})"
    return found


@pytest.mark.timeout(7800)
@pytest.mark.parametrize("version", sorted(PROFILE))
def test_an_old_clients_own_tests_end_through_the_gateway_as_against_its_own_server(
    version: str, tmp_path: Path
) -> None:
    with run_chroma_0x(version, tmp_path / "own") as server:
        own = run_suite(version, server.url, tmp_path / "own-run")
    counts = Counter(own.values())
    assert counts["passed"] >= 50, counts
    with run_chroma(tmp_path / "chroma") as chroma, run_gateway(client_tests_gateway(chroma.url)) as gw:
        through = run_suite(version, gw.url, tmp_path / "gateway-run")
    excused = ZERO_X_ONLY.get(version, {})
    for case, why in excused.items():
        if case in own:  # run (the full suite)
            assert own[case] == "passed", f"{case} ({why}) no longer passes against Chroma {version}"
    assert set(through) == set(own), set(through) ^ set(own)
    differ = {
        case: f"{own[case]} against Chroma {version}, {through[case]} through the gateway"
        for case in own
        if case not in excused and own[case] != through[case]
    }
    assert not differ, "\n".join(f"{case}: {what}" for case, what in sorted(differ.items()))
    print(f"Chroma {version}'s tests: {dict(counts)} against its own server", file=sys.stderr)
