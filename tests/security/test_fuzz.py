"""schemathesis against Chroma's /openapi.json, served through the gateway.

Every operation of Chroma's API gets a few generated requests (bounded: ``MAX_EXAMPLES``
each, no shrinking), once with an admin token and once with a wrong token. A Chroma of its
own takes the beating (the generated requests create and delete things).

- valid credentials: no 5xx made by the gateway itself (its errors carry
  ``X-Chromactl-Origin: gateway``; a plain-text 500 is uvicorn's answer to a crash), no
  unhandled exception in the gateway's log, the token never in an answer;
- invalid credentials: every non-probe operation answers 401, and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from chromactl.gateway.routes import ROUTES, Access
from tests.gateway.helpers import RunningGateway, run_chroma, run_gateway
from tests.security.conftest import ADMIN, WRONG, Watch, gateway_config

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6
#: Where the log capture stood when the fuzz gateway started.
_LOG_START: dict[str, int] = {}
#: Probes need no credentials (the public rows of ``routes.ROUTES``).
PUBLIC = {r.path for r in ROUTES if r.access is Access.PUBLIC}
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_gateway(watch: Watch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with run_chroma(tmp_path_factory.mktemp("fuzz-chroma")) as chroma:  # type: Chroma
        config = gateway_config(chroma.url, tmp_path_factory.mktemp("fuzz-secrets"), None)
        with run_gateway(config) as gw:
            _LOG_START[gw.url] = len(watch.log_lines)
            yield gw
            watch.record_metrics(gw)
            assert chroma.process.poll() is None


@pytest.fixture(scope="module")
def chroma_api(fuzz_gateway: RunningGateway) -> Any:
    return schemathesis.openapi.from_url(
        fuzz_gateway.url + "/openapi.json", headers={"Authorization": f"Bearer {ADMIN}"}
    )


def _check(resp: Any, watch: Watch, where: str, token: str) -> None:
    head = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    text = f"{resp.status_code}\n{head}\n\n{resp.content.decode('latin-1')}"
    watch.record(where, text)
    assert token not in text, f"{where}: the credential is echoed"
    if resp.status_code >= 500:
        assert resp.headers.get("x-chromactl-origin") != "gateway", f"{where}: the gateway made a 5xx\n{text}"
        assert resp.headers.get("content-type", "").startswith("application/json"), (
            f"{where}: a 5xx that is not Chroma's (a gateway crash?)\n{text}"
        )


def fuzz(api: Any, check: Callable[[schemathesis.Case], None]) -> tuple[int, list[str]]:
    """Run ``check`` on generated cases of every operation; (operations, failures)."""
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        op = result.ok()
        operations += 1
        strategies = [op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)]

        @FUZZ_SETTINGS
        @given(case=st.one_of(strategies))
        def run(case: schemathesis.Case) -> None:
            check(case)

        try:
            run()
        except Exception as exc:  # every operation's failure, not just the first
            failures.append(f"{op.label}: {exc}"[:3000])
    return operations, failures


def test_valid_credentials(chroma_api: Any, fuzz_gateway: RunningGateway, watch: Watch) -> None:
    statuses: Counter[int] = Counter()

    def check(case: schemathesis.Case) -> None:
        resp = case.call(base_url=fuzz_gateway.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        statuses[resp.status_code] += 1
        _check(resp, watch, f"fuzz {case.method} {case.formatted_path}", ADMIN)

    operations, failures = fuzz(chroma_api, check)
    assert operations >= 30, "Chroma's API looks incomplete"
    assert failures == []
    assert statuses[200] > 0, statuses  # the fuzzer did get through the gateway


def test_invalid_credentials_get_only_401(
    chroma_api: Any, fuzz_gateway: RunningGateway, watch: Watch
) -> None:
    def check(case: schemathesis.Case) -> None:
        bad = {"Authorization": f"Bearer {WRONG[1]}"}
        resp = case.call(base_url=fuzz_gateway.url, headers=bad, timeout=30)
        _check(resp, watch, f"fuzz-401 {case.method} {case.formatted_path}", WRONG[1])
        if case.path in PUBLIC and case.method.upper() in ("GET", "HEAD"):
            return
        assert resp.status_code == 401, (
            f"{case.method} {case.formatted_path}: {resp.status_code} {resp.text[:500]}"
        )
        assert resp.json()["error"] == "AuthError"

    operations, failures = fuzz(chroma_api, check)
    assert operations >= 30
    assert failures == []


def test_gateway_survived_the_fuzzing(fuzz_gateway: RunningGateway, watch: Watch) -> None:
    """Runs after the fuzz tests: the gateway answers and logged no unhandled exception."""
    assert httpx.get(fuzz_gateway.url + "/api/v2/heartbeat", timeout=5).status_code == 200
    crashes = [line for line in watch.log_lines[_LOG_START[fuzz_gateway.url] :] if '"level": "ERROR"' in line]
    assert crashes == []
