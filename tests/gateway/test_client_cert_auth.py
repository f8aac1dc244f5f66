"""Client certificates as an identity: a verified certificate's name gets a role and scope."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from chromactl.config import parse_config
from chromactl.errors import ConfigError
from chromactl.gateway.auth.client_cert import certificate_names
from tests.gateway.conftest import ADMIN_TOKEN, token_config
from tests.gateway.helpers import Chroma, RunningGateway, make_cert, run_gateway

D = "/api/v2/tenants/default_tenant/databases/default_database"
WRITER_URI = "spiffe://cluster.local/ns/apps/sa/indexer"


class Certs:
    def __init__(self, root: Path) -> None:
        self.ca, _, ca, ca_key = make_cert(root, "ca", common_name="clients-ca", ca=True)
        self.server = make_cert(root, "srv", issuer=(ca, ca_key))[:2]
        self.reader = make_cert(root, "reader", common_name="reader-app", issuer=(ca, ca_key))[:2]
        self.writer = make_cert(
            root,
            "writer",
            common_name="indexer-pod",
            issuer=(ca, ca_key),
            extra_names=[x509.UniformResourceIdentifier(WRITER_URI)],
        )[:2]
        self.stranger = make_cert(root, "stranger", common_name="stranger", issuer=(ca, ca_key))[:2]
        # the same name, but not signed by the client CA: TLS refuses it before any name is read
        self.forged = make_cert(root, "forged", common_name="reader-app")[:2]

    def client(self, gw: RunningGateway, pair: tuple[Path, Path] | None, **headers: str) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if pair is not None:
            ctx.load_cert_chain(str(pair[0]), str(pair[1]))
        return httpx.Client(base_url=gw.url, verify=ctx, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("client-certs"))


@pytest.fixture(scope="module")
def gateway(chroma: Chroma, secrets_dir: Path, certs: Certs) -> Iterator[RunningGateway]:
    config = token_config(
        chroma,
        secrets_dir,
        tls={
            "enabled": True,
            "cert_file": str(certs.server[0]),
            "key_file": str(certs.server[1]),
            "client_auth": "optional",
            "client_ca_file": str(certs.ca),
        },
    )
    config["gateway"]["auth"]["client_cert"] = {  # type: ignore[index]
        "identities": [
            {"name": "reader-app", "role": "reader"},
            {"name": WRITER_URI, "role": "writer", "tenants": ["default_tenant"]},
        ]
    }
    with run_gateway(config) as gw:
        yield gw


def test_a_certificate_name_gets_its_role(gateway: RunningGateway, certs: Certs) -> None:
    with certs.client(gateway, certs.reader) as c:
        assert c.get(f"{D}/collections").status_code == 200
        denied = c.post(f"{D}/collections", json={"name": "by-reader"})
        assert denied.status_code == 403
        assert denied.json()["error"] == "AuthorizationError"
        identity = c.get("/api/v2/auth/identity").json()
        assert set(identity) == {"user_id", "tenant", "databases"}
        assert identity["user_id"] == "reader-app"


def test_a_uri_name_and_a_tenant_scope(gateway: RunningGateway, certs: Certs) -> None:
    with certs.client(gateway, certs.writer) as c:
        made = c.post(f"{D}/collections", json={"name": "by-indexer", "get_or_create": True})
        assert made.status_code == 200, made.text
        assert c.get("/api/v2/auth/identity").json() == {
            "user_id": WRITER_URI,
            "tenant": "default_tenant",
            "databases": ["*"],
        }
        other = c.post("/api/v2/tenants/tenant-b/databases/default_database/collections", json={"name": "x"})
        assert other.status_code == 403


def test_unknown_missing_and_forged_certificates(gateway: RunningGateway, certs: Certs) -> None:
    with certs.client(gateway, certs.stranger) as c:
        resp = c.get(f"{D}/collections")
        assert resp.status_code == 401
        assert resp.json()["error"] == "AuthError" and "stranger" in resp.json()["message"]
    with certs.client(gateway, None) as c:
        assert c.get(f"{D}/collections").status_code == 401
        assert c.get("/api/v2/heartbeat").status_code == 200  # probes stay open
    with pytest.raises(httpx.HTTPError), certs.client(gateway, certs.forged) as c:
        c.get(f"{D}/collections")


def test_a_header_credential_is_tried_first(gateway: RunningGateway, certs: Certs) -> None:
    with certs.client(gateway, certs.reader, Authorization=f"Bearer {ADMIN_TOKEN}") as c:
        assert c.get("/api/v2/auth/identity").json()["user_id"] == "admin"
        made = c.post(f"{D}/collections", json={"name": "by-admin-with-cert", "get_or_create": True})
        assert made.status_code == 200


def test_certificate_names_in_order(tmp_path: Path) -> None:
    _, _, cert, _ = make_cert(
        tmp_path,
        "named",
        common_name="app",
        extra_names=[
            x509.UniformResourceIdentifier(WRITER_URI),
            x509.RFC822Name("app@example.com"),
            x509.DNSName("app.svc"),
        ],
    )
    # CN, then DNS, URI and e-mail names; IP addresses are not names
    assert certificate_names(cert) == ["app", "localhost", "app.svc", WRITER_URI, "app@example.com"]


def test_client_cert_without_verified_tls_is_refused() -> None:
    identities = {"identities": [{"name": "reader-app"}]}
    with pytest.raises(ConfigError, match=r"tls\.client_auth"):
        parse_config({"gateway": {"auth": {"client_cert": identities}}})
    with pytest.raises(ConfigError, match=r"tls\.client_auth"):
        parse_config({"gateway": {"tls": {"enabled": True}, "auth": {"client_cert": identities}}})
