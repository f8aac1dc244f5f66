"""Secrets never appear in logs, error bodies or metrics.

This file runs last in the security suite (``conftest.pytest_collection_modifyitems``):
it greps every log line the gateways of the suite emitted (captured as the JSON lines the
gateway writes), every answer the suite recorded, every metrics page and Chroma's own log,
for every token, password and JWT the suite used, right or wrong.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.gateway.helpers import Chroma, RunningGateway
from tests.security.conftest import ADMIN, BASIC_PASSWORD, BASIC_USER, OIDC, READER_A, WRONG, Watch

pytestmark = pytest.mark.slow

A = "/api/v2/tenants/tenant-a/databases/data/collections"
B = "/api/v2/tenants/tenant-b/databases/data/collections"


def needles(secret: str) -> set[str]:
    """The secret, and its tail (a log that cuts a token short still leaks it)."""
    found = {secret}
    if len(secret) >= 24:
        found.add(secret[-16:])
    if secret.count(".") == 2:  # a JWT: its signature alone is enough to worry
        sig = secret.rsplit(".", 1)[1]
        if len(sig) >= 16:
            found.add(sig)
    return found


def _provoke(gw: RunningGateway, oidc: OIDC, watch: Watch) -> None:
    """Requests that make the gateway log and count: failures of every kind, and successes."""
    valid_jwt = watch.secret(oidc.mint())
    expired_jwt = watch.secret(oidc.mint({"exp": 1}))
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    wrong_basic = watch.secret(base64.b64encode(f"{BASIC_USER}:{WRONG[2]}".encode()).decode())
    attempts = [
        {"Authorization": f"Bearer {READER_A}"},
        {"Authorization": f"Bearer {ADMIN}"},
        {"X-Chroma-Token": WRONG[0]},
        {"Authorization": f"Bearer {WRONG[1]}"},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Basic {wrong_basic}"},
        {"Authorization": f"Bearer {valid_jwt}"},
        {"Authorization": f"Bearer {expired_jwt}"},
    ]
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        for headers in attempts:
            for path in (A, B, "/api/v2/auth/identity", "/api/v2/collections/x"):
                watch.record_response(f"provoke {path}", c.get(path, headers=headers))


def test_no_secret_in_any_log_line_metrics_or_body(
    sec_gateway: RunningGateway, sec_chroma: Chroma, oidc: OIDC, watch: Watch
) -> None:
    _provoke(sec_gateway, oidc, watch)
    for gw in watch.gateways:
        watch.record_metrics(gw)
    chroma_log = (sec_chroma.path / "chroma.log").read_text(errors="replace")
    sources = [("log", line) for line in watch.log_lines] + watch.texts + [("chroma.log", chroma_log)]
    # The capture works: failures were logged, answers and metrics recorded.
    assert any('"message": "authentication failed"' in line for line in watch.log_lines)
    assert any(
        where.startswith("metrics") and "chromactl_gateway_auth_failures" in t for where, t in watch.texts
    )
    assert len(watch.secrets) >= 20
    leaks = [
        f"{where}: {needle[:12]}..."
        for secret in watch.secrets
        for needle in needles(secret)
        for where, text in sources
        if needle in text
    ]
    assert leaks == []
