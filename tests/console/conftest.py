"""The web console's stack, as a user runs it: Chroma 1.x, the project's OpenID provider, and
``chromactl gateway`` (the pod's process: backups, audit file, limits) behind TLS with every
sign-in method on; and Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from tests.gateway.helpers import (
    Chroma,
    free_port,
    make_cert,
    run_chroma,
    stop_process,
    wait_until,
    write_secret,
)
from tests.gateway.oidc_provider import AUDIENCE, provider, rsa_jwk

CHROMACTL = str(Path(sys.executable).with_name("chromactl"))
CHROMIUM = "/usr/bin/chromium"
#: What Chromium needs on a machine with no display and no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "ck_console-admin-token"
READER_A_TOKEN = "ck_console-reader-a-token"
#: A reader with a small request rate (gateway.limits), for the console's 429 page.
LIMITED_TOKEN = "ck_console-limited-token"
BASIC_USER, BASIC_PASSWORD = "carol", "carol-password-1"
CERT_NAME = "console-admin-cert"
#: Records of the big collection (the record browser's case).
BIG = 10_000
DIM = 16
TOPICS = ("news", "sport", "science", "travel")
#: What a document or metadata value may carry that must stay text in the console.
XSS_DOCUMENT = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
XSS_URL = "javascript:document.title='pwned'"


@dataclass
class Stack:
    url: str
    chroma: Chroma
    issuer: str
    work: Path
    ca: Path
    client_cert: Path
    client_key: Path
    backup_target: Path
    config: Path
    audit_file: Path

    def api(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, verify=str(self.ca), timeout=60
        )


def _db(tenant: str, database: str) -> str:
    return f"/api/v2/tenants/{tenant}/databases/{database}"


def _seed(chroma: Chroma) -> None:
    """Tenants a and b, the big collection, and one whose documents are attacks."""
    rng = random.Random(32)
    with httpx.Client(base_url=chroma.url, timeout=120) as c:
        for tenant in ("tenant-a", "tenant-b"):
            c.post("/api/v2/tenants", json={"name": tenant}).raise_for_status()
            c.post(f"/api/v2/tenants/{tenant}/databases", json={"name": "main"}).raise_for_status()
            col = c.post(
                f"{_db(tenant, 'main')}/collections",
                json={"name": f"notes-{tenant[-1]}", "metadata": {"team": tenant}},
            ).json()
            c.post(
                f"{_db(tenant, 'main')}/collections/{col['id']}/add",
                json={
                    "ids": [f"{tenant}-{i}" for i in range(5)],
                    "embeddings": [[rng.random() for _ in range(DIM)] for _ in range(5)],
                    "documents": [f"{tenant} secret note {i}" for i in range(5)],
                },
            ).raise_for_status()
        default = _db("default_tenant", "default_database")
        big = c.post(
            f"{default}/collections", json={"name": "big", "metadata": {"source": "console tests"}}
        ).json()
        for start in range(0, BIG, 1000):
            ids = range(start, min(start + 1000, BIG))
            c.post(
                f"{default}/collections/{big['id']}/add",
                json={
                    "ids": [f"rec-{i:05d}" for i in ids],
                    "embeddings": [[rng.random() for _ in range(DIM)] for _ in ids],
                    "documents": [f"record {i} about {TOPICS[i % len(TOPICS)]}" for i in ids],
                    "metadatas": [{"topic": TOPICS[i % len(TOPICS)], "n": i} for i in ids],
                },
            ).raise_for_status()
        xss = c.post(
            f"{default}/collections", json={"name": "xss", "metadata": {"note": XSS_DOCUMENT}}
        ).json()
        c.post(
            f"{default}/collections/{xss['id']}/add",
            json={
                "ids": ["attack-1", "attack-2"],
                "embeddings": [[rng.random() for _ in range(DIM)] for _ in range(2)],
                "documents": [XSS_DOCUMENT, f'<a href="{XSS_URL}">click</a>'],
                "metadatas": [{"url": XSS_URL, "html": XSS_DOCUMENT}, {"url": XSS_URL}],
            },
        ).raise_for_status()


def gateway_config(
    stack_dir: Path, chroma: Chroma, issuer: str, certs: dict[str, Path], port: int
) -> dict[str, Any]:
    secrets = stack_dir / "secrets"
    tokens = [
        {"name": "admin", "token_file": str(write_secret(secrets, "admin", ADMIN_TOKEN)), "role": "admin"},
        {
            "name": "reader-a",
            "token_file": str(write_secret(secrets, "reader-a", READER_A_TOKEN)),
            "role": "reader",
            "tenants": ["tenant-a"],
        },
        {
            "name": "limited",
            "token_file": str(write_secret(secrets, "limited", LIMITED_TOKEN)),
            "role": "reader",
        },
    ]
    return {
        "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data")},
        "log": {"level": "WARNING"},
        "gateway": {
            "listen_address": "127.0.0.1",
            "port": port,
            "metrics_port": free_port(),
            "workers": 1,
            "tls": {
                "enabled": True,
                "cert_file": str(certs["server_cert"]),
                "key_file": str(certs["server_key"]),
                "client_auth": "optional",
                "client_ca_file": str(certs["ca"]),
            },
            "auth": {
                "token": {"credentials": tokens},
                "basic": {
                    "bcrypt_rounds": 4,
                    "users": [
                        {
                            "username_file": str(write_secret(secrets, "basic-user", BASIC_USER)),
                            "password_file": str(write_secret(secrets, "basic-password", BASIC_PASSWORD)),
                            "role": "reader",
                        }
                    ],
                },
                "oidc": {
                    "issuer": issuer,
                    "audience": [AUDIENCE],
                    "rules": [
                        {"claim": "groups", "value": "chroma-admins", "role": "admin"},
                        {
                            "claim": "groups",
                            "value": "chroma-readers",
                            "role": "reader",
                            "tenants": ["tenant-b"],
                        },
                    ],
                },
                "client_cert": {"identities": [{"name": CERT_NAME, "role": "admin"}]},
            },
            "audit": {"reads": True, "file": str(stack_dir / "audit" / "audit.log")},
            "limits": {
                "enabled": True,
                "credentials": {
                    "*": {"requests_per_second": 500, "burst": 500},
                    "limited": {"requests_per_second": 0.2, "burst": 4},
                },
                "tenants": {"tenant-a": {"max_collections": 20}},
            },
            "console": {"oidc": {"client_id": "chroma-console", "scopes": ["openid", "chroma"]}},
        },
        "backup": {
            "target": str(stack_dir / "backups"),
            "continuous": {"enabled": True},
            "copies": [{"target": str(stack_dir / "backups-offsite")}],
        },
    }


# Package-scoped: the stack and Playwright end with this suite. Playwright's sync API keeps an
# event loop running in the test process while it is open, which the other suites' asyncio.run()
# (in the same xdist worker) must not meet.
@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.gateway.node import ensure_node_modules

    js_dir = ensure_node_modules()
    work = tmp_path_factory.mktemp("console")
    ca_cert, _, ca, ca_k = make_cert(work, "console-ca", common_name="console test CA", ca=True)
    server_cert, server_key, _, _ = make_cert(work, "console-server", issuer=(ca, ca_k))
    client_cert, client_key, _, _ = make_cert(
        work, "console-client", common_name=CERT_NAME, issuer=(ca, ca_k)
    )
    certs = {"ca": ca_cert, "server_cert": server_cert, "server_key": server_key}
    _, jwk = rsa_jwk("console")
    with contextlib.ExitStack() as stack_:
        chroma = stack_.enter_context(run_chroma(work / "chroma"))
        _seed(chroma)
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        issuer = stack_.enter_context(
            provider(js_dir, work, {"keys": [jwk]}, console_redirect_uris=[url + "/console/oidc/callback"])
        )
        config = gateway_config(work, chroma, issuer, certs, port)
        config_file = work / "chromactl.json"
        config_file.write_text(json.dumps(config))
        log = stack_.enter_context((work / "gateway.log").open("wb"))
        proc = subprocess.Popen(
            [CHROMACTL, "gateway", "--config", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stack_.callback(stop_process, proc)

        def up() -> bool:
            try:
                return httpx.get(url + "/api/v2/heartbeat", verify=str(ca_cert), timeout=2).is_success
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_until(up, 60, "the gateway")
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited:\n" + (work / "gateway.log").read_text()[-3000:])
        yield Stack(
            url=url,
            chroma=chroma,
            issuer=issuer,
            work=work,
            ca=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            backup_target=work / "backups",
            config=config_file,
            audit_file=work / "audit" / "audit.log",
        )


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies); the gateway's certificate is the test CA's."""
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


def shot(page: Any, name: str) -> None:
    """A screenshot for docs/console.md, when ``CONSOLE_SCREENSHOTS`` names a folder
    (``make console-screenshots``)."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in_with_token(page: Any, url: str, token: str) -> None:
    page.goto(url + "/console/")
    page.fill("input[name=token]", token)
    page.click("text=Sign in with the token")
    page.wait_for_url(url + "/console/")
