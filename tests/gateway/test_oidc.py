"""OIDC/JWT against a real OpenID provider (npm oidc-provider, client-credentials grant)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chromactl.config import OIDCSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.auth.oidc import OIDCAuthenticator
from tests.gateway.helpers import Chroma, RunningGateway, run_gateway, wait_until
from tests.gateway.oidc_provider import AUDIENCE, get_token, provider, rsa_jwk

D = "/api/v2/tenants/default_tenant/databases/default_database"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    return rsa_jwk("k1")


@pytest.fixture(scope="module")
def issuer(
    js_dir: Path, tmp_path_factory: pytest.TempPathFactory, keys: tuple[Any, dict[str, Any]]
) -> Iterator[str]:
    with provider(js_dir, tmp_path_factory.mktemp("oidc"), {"keys": [keys[1]]}) as url:
        yield url


@pytest.fixture(scope="module")
def oidc_gateway(chroma: Chroma, issuer: str) -> Iterator[RunningGateway]:
    config = {
        "chroma": {"url": chroma.url},
        "gateway": {
            "auth": {
                "oidc": {
                    "issuer": issuer,
                    "audience": [AUDIENCE],
                    "clock_skew_s": 0,
                    "jwks_min_refresh_s": 0,
                    "rules": [
                        {"claim": "groups", "value": "chroma-admins", "role": "admin"},
                        {"claim": "groups", "value": "chroma-readers", "role": "reader"},
                    ],
                }
            }
        },
    }
    with run_gateway(config) as gw:
        yield gw


def call(gw: RunningGateway, token: str) -> httpx.Response:
    return httpx.get(f"{gw.url}{D}/collections", headers={"Authorization": f"Bearer {token}"})


def reason_count(gw: RunningGateway, reason: str) -> float:
    value = gw.gateway.metrics.registry.get_sample_value(
        "chromactl_gateway_auth_failures_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.slow
def test_valid_token_works_with_the_role_from_groups(oidc_gateway: RunningGateway, issuer: str) -> None:
    admin = get_token(issuer, "admin-client")
    assert call(oidc_gateway, admin).status_code == 200
    identity = httpx.get(
        f"{oidc_gateway.url}/api/v2/auth/identity", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    assert identity == {"user_id": "admin-client", "tenant": "*", "databases": ["*"]}
    reader = get_token(issuer, "reader-client")
    assert call(oidc_gateway, reader).status_code == 200
    create = httpx.post(
        f"{oidc_gateway.url}{D}/collections",
        json={"name": "oidc-no"},
        headers={"X-Chroma-Token": reader},
    )
    assert create.status_code == 403


@pytest.mark.slow
def test_python_client_with_an_oidc_token(oidc_gateway: RunningGateway, issuer: str) -> None:
    import chromadb
    from chromadb.config import Settings as ClientSettings

    host, port = oidc_gateway.url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(
        host=host,
        port=int(port),
        settings=ClientSettings(
            chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
            chroma_client_auth_credentials=get_token(issuer, "admin-client"),
            anonymized_telemetry=False,
        ),
    )
    col = client.get_or_create_collection("oidc-python")
    col.upsert(ids=["o"], embeddings=[[1.0, 2.0]])
    assert col.count() == 1


@pytest.mark.slow
def test_expired_token(oidc_gateway: RunningGateway, issuer: str) -> None:
    token = get_token(issuer, "short-client")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    wait_until(lambda: time.time() > exp + 1, 10, "the token to expire")
    before = reason_count(oidc_gateway, "jwt_expired")
    resp = call(oidc_gateway, token)
    assert resp.status_code == 401
    assert resp.json()["error"] == "AuthError"
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert reason_count(oidc_gateway, "jwt_expired") == before + 1


@pytest.mark.slow
def test_wrong_audience(oidc_gateway: RunningGateway, issuer: str) -> None:
    token = get_token(issuer, "admin-client", resource="https://other.test")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://other.test"
    before = reason_count(oidc_gateway, "jwt_audience")
    assert call(oidc_gateway, token).status_code == 401
    assert reason_count(oidc_gateway, "jwt_audience") == before + 1


@pytest.mark.slow
def test_wrong_issuer(
    oidc_gateway: RunningGateway,
    js_dir: Path,
    tmp_path: Path,
    keys: tuple[Any, dict[str, Any]],
) -> None:
    # Same signing key, other issuer: only the iss check can catch it.
    with provider(js_dir, tmp_path, {"keys": [keys[1]]}) as other:
        token = get_token(other, "admin-client")
    before = reason_count(oidc_gateway, "jwt_issuer")
    assert call(oidc_gateway, token).status_code == 401
    assert reason_count(oidc_gateway, "jwt_issuer") == before + 1


@pytest.mark.slow
def test_bad_signature(oidc_gateway: RunningGateway, issuer: str) -> None:
    a = get_token(issuer, "admin-client")
    b = get_token(issuer, "reader-client")
    forged = a.rsplit(".", 1)[0] + "." + b.rsplit(".", 1)[1]
    before = reason_count(oidc_gateway, "jwt_signature")
    assert call(oidc_gateway, forged).status_code == 401
    assert reason_count(oidc_gateway, "jwt_signature") == before + 1


@pytest.mark.slow
def test_unknown_key_refetches_then_refuses(oidc_gateway: RunningGateway, issuer: str) -> None:
    key, _ = rsa_jwk("not-published")
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "x", "exp": now + 300, "iat": now}
    claims["groups"] = ["chroma-admins"]
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "not-published"})
    oidc = next(a for a in oidc_gateway.gateway.authenticators if isinstance(a, OIDCAuthenticator))
    fetches = oidc.keys.fetches
    assert call(oidc_gateway, token).status_code == 401
    assert oidc.keys.fetches == fetches + 1  # the key set was fetched again first
    assert reason_count(oidc_gateway, "jwt_unknown_key") >= 1


@pytest.mark.slow
def test_none_and_hmac_tokens_are_refused(
    oidc_gateway: RunningGateway, issuer: str, keys: tuple[Any, dict[str, Any]]
) -> None:
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "x", "exp": now + 300, "groups": ["chroma-admins"]}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    # HS256 keyed with the public key's modulus bytes: the classic key-confusion attack.
    n = keys[1]["n"]  # base64url without padding
    modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    hs = jwt.encode(claims, modulus, algorithm="HS256", headers={"kid": "k1"})
    before = reason_count(oidc_gateway, "jwt_algorithm")
    for token in (unsigned, hs):
        assert call(oidc_gateway, token).status_code == 401
    assert reason_count(oidc_gateway, "jwt_algorithm") == before + 2


def test_config_refuses_symmetric_algorithms() -> None:
    with pytest.raises(ValueError):
        OIDCSettings.model_validate({"issuer": "https://i", "audience": ["a"], "algorithms": ["HS256"]})
    with pytest.raises(ValueError):
        OIDCSettings.model_validate({"issuer": "https://i", "audience": ["a"], "algorithms": ["none"]})


def test_token_without_matching_rule_has_no_grants() -> None:
    settings = OIDCSettings.model_validate(
        {"issuer": "https://i", "audience": ["a"], "rules": [{"value": "admins", "role": "admin"}]}
    )
    auth = OIDCAuthenticator(settings)

    async def fake_verify(token: str) -> dict[str, Any]:
        return {"sub": "u", "groups": ["others"]}

    auth.verify = fake_verify  # type: ignore[method-assign]
    principal = asyncio.run(auth.authenticate(Presented(Kind.BEARER, "eyJ.a.b")))
    assert principal is not None and principal.grants == ()
    with pytest.raises(AuthFailure):
        asyncio.run(OIDCAuthenticator(settings).verify("not-a-jwt"))
