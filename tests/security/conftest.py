"""The security suite: one real Chroma, one gateway with every auth method, and a watch
that collects every log line, metrics page and answer the suite produced, so that the
last test (``test_secrets.py``) can look for credentials in all of it. Fixtures are
package-scoped: the log capture ends with the security tests."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chromactl.logging import JsonFormatter
from tests.gateway.helpers import Chroma, RunningGateway, run_chroma, run_gateway, write_secret
from tests.gateway.node import ensure_node_modules
from tests.gateway.oidc_provider import AUDIENCE, provider

ADMIN = "ck_sec-admin-0f3a9c1d7e5b2a48"
READER_A = "ck_sec-reader-a-7d2c1b9e4f6a3e05"
WRITER_A = "ck_sec-writer-a-3b8e6f1a2c4d9e77"
BASIC_USER = "alice"
BASIC_PASSWORD = "pw-sec-alice-5e1d9b7c3a"
#: Wrong credentials the suite presents: a typo of a real token must not be logged either.
WRONG = ["ck_sec-reader-a-7d2c1b9e4f6a3e06", "ck_guessed-token-1234567890", "pw-sec-alice-wrong"]


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The secrets check runs after every other security test (it greps what they left)."""
    secrets = [i for i in items if i.path.parent == HERE and i.path.name == "test_secrets.py"]
    rest = [i for i in items if i not in secrets]
    ours = [n for n, i in enumerate(rest) if i.path.parent == HERE]
    at = ours[-1] + 1 if ours else len(rest)
    items[:] = rest[:at] + secrets + rest[at:]


@dataclass
class Watch:
    """Every secret the suite used, and every text a secret must not appear in."""

    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    #: Gateways still running when the secrets check runs (it scrapes their metrics).
    gateways: list[RunningGateway] = field(default_factory=list)

    def secret(self, value: str) -> str:
        self.secrets.add(value)
        return value

    def record(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        self.texts.append((where, text))

    def record_response(self, where: str, resp: httpx.Response) -> None:
        head = "\n".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in resp.headers.raw)
        self.record(where, f"{resp.status_code}\n{head}\n\n{resp.content.decode('latin-1')}")

    def record_metrics(self, gw: RunningGateway) -> None:
        if gw.metrics_url:
            self.record(f"metrics of {gw.url}", httpx.get(gw.metrics_url, timeout=10).text)


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


@pytest.fixture(scope="package")
def watch() -> Iterator[Watch]:
    """Captures every log record of the process (gateway, uvicorn, aiohttp) as a JSON line.

    ``chromactl``'s own logger gets the capture directly (``configure_logging``, run by
    CLI tests earlier in the session, stops it from propagating); the rest through the root.
    """
    w = Watch()
    for s in [ADMIN, READER_A, WRITER_A, BASIC_PASSWORD, *WRONG]:
        w.secret(s)
    handler = _ListHandler(w.log_lines)
    root = logging.getLogger()
    ours = logging.getLogger("chromactl")
    saved = (list(ours.handlers), ours.propagate)
    levels = {name: logging.getLogger(name).level for name in ("chromactl", "uvicorn", "aiohttp")}
    root.addHandler(handler)
    ours.handlers[:] = [handler]
    ours.propagate = False
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield w
    finally:
        root.removeHandler(handler)
        ours.handlers[:], ours.propagate = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="package")
def sec_chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chroma]:
    with run_chroma(tmp_path_factory.mktemp("sec-chroma")) as server:
        yield server


@dataclass
class World:
    """Two tenants' data in Chroma. The attacker holds tenant-a credentials only."""

    chroma_url: str
    a_id: str
    b_id: str
    b_name: str
    #: Strings only tenant-b's data contains: no answer to an attacker may carry them.
    b_markers: list[str]

    def snapshot(self) -> dict[str, Any]:
        """Everything an attack could change, read from Chroma directly."""
        out: dict[str, Any] = {}
        with httpx.Client(base_url=self.chroma_url, timeout=30) as c:
            for t in ("default_tenant", "tenant-a", "tenant-b"):
                out[f"tenant:{t}"] = c.get(f"/api/v2/tenants/{t}").json()
                dbs = c.get(f"/api/v2/tenants/{t}/databases").json()
                out[f"dbs:{t}"] = sorted(d["name"] for d in dbs)
                for d in out[f"dbs:{t}"]:
                    cols = c.get(f"/api/v2/tenants/{t}/databases/{d}/collections").json()
                    for col in sorted(cols, key=lambda x: x["name"]):
                        base = f"/api/v2/tenants/{t}/databases/{d}/collections/{col['id']}"
                        recs = c.post(
                            base + "/get", json={"include": ["documents", "metadatas", "embeddings"]}
                        ).json()
                        out[f"col:{t}/{d}/{col['name']}"] = {
                            "id": col["id"],
                            "metadata": col.get("metadata"),
                            "records": recs,
                        }
        return out


def _collection(c: httpx.Client, tenant: str, name: str, docs: list[str], meta: str) -> str:
    c.post("/api/v2/tenants", json={"name": tenant}).raise_for_status()
    c.post(f"/api/v2/tenants/{tenant}/databases", json={"name": "data"}).raise_for_status()
    resp = c.post(
        f"/api/v2/tenants/{tenant}/databases/data/collections",
        json={"name": name, "metadata": {"owner": meta}},
    )
    resp.raise_for_status()
    cid = str(resp.json()["id"])
    c.post(
        f"/api/v2/tenants/{tenant}/databases/data/collections/{cid}/add",
        json={
            "ids": [f"r{i}" for i in range(len(docs))],
            "embeddings": [[float(i), 1.0, 0.5] for i in range(len(docs))],
            "documents": docs,
            "metadatas": [{"owner": meta} for _ in docs],
        },
    ).raise_for_status()
    return cid


@pytest.fixture(scope="package")
def world(sec_chroma: Chroma) -> World:
    tag = uuid.uuid4().hex[:8]
    b_docs = [f"SECRET-B-{tag}-{i}" for i in range(3)]
    b_meta = f"owner-b-{tag}"
    b_name = f"docs-b-{tag}"
    with httpx.Client(base_url=sec_chroma.url, timeout=30) as c:
        a_id = _collection(c, "tenant-a", "docs-a", [f"doc-a-{i}" for i in range(3)], "owner-a")
        b_id = _collection(c, "tenant-b", b_name, b_docs, b_meta)
    return World(sec_chroma.url, a_id, b_id, b_name, [*b_docs, b_meta, b_name])


@dataclass
class OIDC:
    issuer: str
    key: rsa.RSAPrivateKey
    kid: str

    def mint(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "team-a-app",
            "iat": now,
            "exp": now + 600,
            "groups": ["team-a-readers"],
        }
        body.update(claims or {})
        for k in [k for k, v in body.items() if v is None]:
            del body[k]
        headers = {"kid": self.kid, **header}
        return jwt.encode(body, self.key, algorithm="RS256", headers=headers)


@pytest.fixture(scope="package")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDC]:
    """The npm oidc-provider, serving a JWKS whose private key the tests hold."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update({"kid": "sec-k1", "alg": "RS256", "use": "sig"})
    js_dir = ensure_node_modules()
    with provider(js_dir, tmp_path_factory.mktemp("sec-oidc"), {"keys": [jwk]}) as issuer:
        yield OIDC(issuer, key, "sec-k1")


def gateway_config(chroma_url: str, secrets: Path, issuer: str | None, **gateway: Any) -> dict[str, Any]:
    """Token, basic and (with ``issuer``) OIDC auth at once; tenant-a scoped attackers."""
    tokens = []
    for name, token, role, tenants in [
        ("sec-admin", ADMIN, "admin", ["*"]),
        ("reader-a", READER_A, "reader", ["tenant-a"]),
        ("writer-a", WRITER_A, "writer", ["tenant-a"]),
    ]:
        path = write_secret(secrets, f"{name}.token", token)
        tokens.append({"name": name, "token_file": str(path), "role": role, "tenants": tenants})
    auth: dict[str, Any] = {
        "token": {"credentials": tokens},
        "basic": {
            "bcrypt_rounds": 4,
            "users": [
                {
                    "username": BASIC_USER,
                    "password_file": str(write_secret(secrets, "alice.password", BASIC_PASSWORD)),
                    "role": "reader",
                    "tenants": ["tenant-a"],
                }
            ],
        },
    }
    if issuer is not None:
        auth["oidc"] = {
            "issuer": issuer,
            "audience": [AUDIENCE],
            "clock_skew_s": 0,
            "jwks_min_refresh_s": 0,
            "rules": [
                {"claim": "groups", "value": "team-a-readers", "role": "reader", "tenants": ["tenant-a"]}
            ],
        }
    return {"chroma": {"url": chroma_url}, "gateway": {"auth": auth, **gateway}}


@pytest.fixture(scope="package")
def sec_gateway(
    watch: Watch,
    sec_chroma: Chroma,
    world: World,
    oidc: OIDC,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    config = gateway_config(sec_chroma.url, tmp_path_factory.mktemp("sec-secrets"), oidc.issuer)
    with run_gateway(config) as gw:
        watch.gateways.append(gw)
        yield gw
