"""Rate limits through the rendered chart (docs/limits.md): clients and helm tests pass under
limits above what they use; a credential over its own rate is refused with 429 and
Retry-After (its connection then waits out the wait) while the release's credential keeps
being served."""

from __future__ import annotations

import base64
import time

import httpx

from tests.e2e.conftest import SERVICE, assert_helm_tests_pass, install, run_client
from tests.podrunner.runner import PodRunner

AUTH_SECRET = "chromadb-auth"
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
DASH_TOKEN = "dash-" + "d" * 32


def test_limits_refuse_the_noisy_credential_and_serve_the_others(cluster: PodRunner) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "dash-token", "namespace": "default"},
                "data": {"token": base64.b64encode(DASH_TOKEN.encode()).decode()},
            }
        ]
    )
    values = {
        "chromadb": {
            "auth": {"credentials": [{"name": "dash", "role": "reader", "secretName": "dash-token"}]}
        },
        "gateway": {
            "limits": {
                "enabled": True,
                "credentials": {
                    "*": {"requestsPerSecond": 1000, "burst": 1000},
                    "dash": {"requestsPerSecond": 0.5, "burst": 3},
                },
                "tenants": {"default_tenant": {"maxCollections": 1000}},
            }
        },
    }
    install(cluster, values, gateway=True)
    assert_helm_tests_pass(cluster)
    assert run_client(cluster, "add", token_secret=AUTH_SECRET) == {"count": 2, "nearest": ["a"]}

    secret = cluster.store.data("Secret", AUTH_SECRET)
    assert secret is not None
    url = cluster.service_url(SERVICE, 8000)
    admin = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {secret['token'].decode()}"}, timeout=10
    )
    dash = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DASH_TOKEN}"}, timeout=10)
    started = time.monotonic()
    with admin, dash:
        answers = [(dash.get(COLLECTIONS), admin.get(COLLECTIONS)) for _ in range(6)]
    elapsed = time.monotonic() - started
    dashed = [d.status_code for d, _ in answers]
    # its burst, then refused; sending again at once, it waits on its connection for a token
    assert dashed[:4] == [200] * 3 + [429] and set(dashed) == {200, 429}, dashed
    assert dashed.count(200) <= 3 + 0.5 * elapsed + 1, (dashed, elapsed)
    assert {a.status_code for _, a in answers} == {200}
    refused = next(d for d, _ in answers if d.status_code == 429)
    assert refused.json()["error"] == "RateLimitError" and int(refused.headers["retry-after"]) >= 1
