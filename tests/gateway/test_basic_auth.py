"""HTTP basic: bcrypt hashes only, the Python client's BasicAuthClientProvider, curl -u."""

from __future__ import annotations

import asyncio
import base64
import gc
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import chromadb
import httpx
import pytest
from chromadb.config import Settings as ClientSettings

from chromactl.config import BasicAuthSettings
from chromactl.errors import ConfigError
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.auth.basic import BasicAuthenticator
from tests.gateway.helpers import Chroma, RunningGateway, run_gateway, write_secret

PASSWORD = "correct horse battery"


def basic(value: str) -> Presented:
    return Presented(Kind.BASIC, base64.b64encode(value.encode()).decode())


@pytest.fixture
def authenticator(tmp_path: Path) -> BasicAuthenticator:
    hashed = bcrypt.hashpw(b"hashed-pw", bcrypt.gensalt(4)).decode()
    settings = BasicAuthSettings.model_validate(
        {
            "bcrypt_rounds": 4,
            "users": [
                {
                    "username": "alice",
                    "password_file": str(write_secret(tmp_path, "pw", PASSWORD)),
                    "role": "writer",
                },
                {
                    "username_file": str(write_secret(tmp_path, "user", "bob")),
                    "password_hash_file": str(write_secret(tmp_path, "hash", hashed)),
                },
            ],
        }
    )
    return BasicAuthenticator.from_settings(settings)


def test_only_bcrypt_hashes_are_kept(authenticator: BasicAuthenticator) -> None:
    for pw_hash, _ in authenticator._users.values():
        assert pw_hash.startswith(b"$2")
    # No object the authenticator holds contains the plain password.
    gc.collect()
    held = repr(vars(authenticator))
    assert PASSWORD not in held


def test_right_password(authenticator: BasicAuthenticator) -> None:
    alice = asyncio.run(authenticator.authenticate(basic(f"alice:{PASSWORD}")))
    assert alice is not None and alice.user_id == "alice" and alice.method == "basic"
    bob = asyncio.run(authenticator.authenticate(basic("bob:hashed-pw")))
    assert bob is not None and bob.user_id == "bob"


@pytest.mark.parametrize("value", [f"alice:{PASSWORD}x", "alice:", "mallory:" + PASSWORD, f"bob:{PASSWORD}"])
def test_wrong_user_or_password(authenticator: BasicAuthenticator, value: str) -> None:
    with pytest.raises(AuthFailure) as exc:
        asyncio.run(authenticator.authenticate(basic(value)))
    assert exc.value.reason == "invalid_password"


@pytest.mark.parametrize("raw", ["not base64!", base64.b64encode(b"no-colon").decode()])
def test_malformed(authenticator: BasicAuthenticator, raw: str) -> None:
    with pytest.raises(AuthFailure) as exc:
        asyncio.run(authenticator.authenticate(Presented(Kind.BASIC, raw)))
    assert exc.value.reason == "malformed"


def test_verified_pairs_are_cached_under_a_keyed_hash(authenticator: BasicAuthenticator) -> None:
    asyncio.run(authenticator.authenticate(basic(f"alice:{PASSWORD}")))
    assert len(authenticator._verified) == 1
    key = next(iter(authenticator._verified))
    assert PASSWORD.encode() not in key and len(key) == 32
    # A wrong password is never cached.
    with pytest.raises(AuthFailure):
        asyncio.run(authenticator.authenticate(basic("alice:wrong")))
    assert len(authenticator._verified) == 1


def test_a_hash_file_must_hold_a_bcrypt_hash(tmp_path: Path) -> None:
    settings = BasicAuthSettings.model_validate(
        {"users": [{"username": "u", "password_hash_file": str(write_secret(tmp_path, "h", "plain"))}]}
    )
    with pytest.raises(ConfigError, match="bcrypt"):
        BasicAuthenticator.from_settings(settings)


# --- end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_gateway(chroma: Chroma, secrets_dir: Path) -> Iterator[RunningGateway]:
    user = write_secret(secrets_dir, "basic-username", "admin")
    password = write_secret(secrets_dir, "basic-password", PASSWORD)
    config = {
        "chroma": {"url": chroma.url},
        "gateway": {
            "auth": {
                "basic": {
                    "bcrypt_rounds": 4,
                    "users": [{"username_file": str(user), "password_file": str(password), "role": "admin"}],
                }
            }
        },
    }
    with run_gateway(config) as gw:
        yield gw


LIST = "/api/v2/tenants/default_tenant/databases/default_database/collections"


@pytest.mark.slow
def test_curl_u(basic_gateway: RunningGateway) -> None:
    assert httpx.get(basic_gateway.url + LIST, auth=("admin", PASSWORD)).status_code == 200
    wrong = httpx.get(basic_gateway.url + LIST, auth=("admin", "nope"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "AuthError"
    assert wrong.headers["www-authenticate"].startswith("Basic")


@pytest.mark.slow
def test_python_client_basic_provider(basic_gateway: RunningGateway) -> None:
    host, port = basic_gateway.url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(
        host=host,
        port=int(port),
        settings=ClientSettings(
            chroma_client_auth_provider="chromadb.auth.basic_authn.BasicAuthClientProvider",
            chroma_client_auth_credentials=f"admin:{PASSWORD}",
            anonymized_telemetry=False,
        ),
    )
    col = client.get_or_create_collection("basic-auth")
    col.upsert(ids=["x"], embeddings=[[0.5, 0.5]])
    assert col.count() == 1
    assert client.get_user_identity().user_id == "admin"
