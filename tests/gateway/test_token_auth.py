"""Static tokens: both headers, any header case, found by digest, real clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import chromadb
import httpx
import pytest
from chromadb.config import Settings as ClientSettings

from chromactl.errors import ConfigError
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented, presented_credentials
from chromactl.gateway.auth.token import TokenAuthenticator
from chromactl.gateway.principal import Grant, Principal, Role
from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, token_config
from tests.gateway.helpers import RunningGateway, run_gateway

ADMIN = Principal("admin", "token", (Grant(Role.ADMIN),))


def authenticator(**kw: bool) -> TokenAuthenticator:
    return TokenAuthenticator([("s3cret", ADMIN)], {Kind.BEARER, Kind.CHROMA_TOKEN}, **kw)


def test_headers_are_read_case_insensitively() -> None:
    # ASGI servers lower-case header names; the scheme word may be any case.
    found = presented_credentials([(b"authorization", b"bEaReR abc"), (b"x-chroma-token", b" def ")])
    assert found == [Presented(Kind.BEARER, "abc"), Presented(Kind.CHROMA_TOKEN, "def")]
    assert presented_credentials([(b"authorization", b"BASIC dXM6cHc=")]) == [
        Presented(Kind.BASIC, "dXM6cHc=")
    ]


def test_x_chroma_token_may_carry_a_bearer_word() -> None:
    # `curl -H "${CHROMA_HEADER_NAME}: Bearer ${CHROMA_TOKEN}"` with X-Chroma-Token (the seed's command).
    assert presented_credentials([(b"x-chroma-token", b"Bearer abc")]) == [
        Presented(Kind.CHROMA_TOKEN, "abc")
    ]
    assert presented_credentials([(b"x-chroma-token", b"bearer  abc ")]) == [
        Presented(Kind.CHROMA_TOKEN, "abc")
    ]
    # A token that merely starts with the letters is left whole.
    assert presented_credentials([(b"x-chroma-token", b"Bearerabc")]) == [
        Presented(Kind.CHROMA_TOKEN, "Bearerabc")
    ]


def test_right_token_gives_its_principal() -> None:
    auth = authenticator()
    assert asyncio.run(auth.authenticate(Presented(Kind.BEARER, "s3cret"))) is ADMIN
    assert asyncio.run(auth.authenticate(Presented(Kind.CHROMA_TOKEN, "s3cret"))) is ADMIN


@pytest.mark.parametrize("value", ["s3cre", "s3cret ", "S3CRET", ""])
def test_wrong_token_fails(value: str) -> None:
    with pytest.raises(AuthFailure) as exc:
        asyncio.run(authenticator().authenticate(Presented(Kind.BEARER, value)))
    assert exc.value.reason == "invalid_token"


def test_basic_credentials_are_not_its_business() -> None:
    assert asyncio.run(authenticator().authenticate(Presented(Kind.BASIC, "x"))) is None


def test_jwt_shaped_values_are_left_to_oidc_when_asked() -> None:
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    assert asyncio.run(authenticator(defer_jwt=True).authenticate(Presented(Kind.BEARER, jwt_like))) is None
    with pytest.raises(AuthFailure):
        asyncio.run(authenticator().authenticate(Presented(Kind.BEARER, jwt_like)))


def test_only_configured_headers_are_accepted() -> None:
    auth = TokenAuthenticator([("s3cret", ADMIN)], {Kind.CHROMA_TOKEN})
    with pytest.raises(AuthFailure) as exc:
        asyncio.run(auth.authenticate(Presented(Kind.BEARER, "s3cret")))
    assert exc.value.reason == "header_not_allowed"


def test_token_is_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from chromactl.config import TokenAuthSettings

    monkeypatch.setenv("GW_TEST_TOKEN", "from-env")
    settings = TokenAuthSettings.model_validate(
        {"credentials": [{"name": "e", "token_env": "GW_TEST_TOKEN"}]}
    )
    auth = TokenAuthenticator.from_settings(settings)
    assert auth.match("from-env") is not None
    monkeypatch.delenv("GW_TEST_TOKEN")
    with pytest.raises(ConfigError, match="GW_TEST_TOKEN"):
        TokenAuthenticator.from_settings(settings)


def test_empty_token_file_is_a_config_error(tmp_path: Path) -> None:
    from chromactl.config import TokenAuthSettings

    (tmp_path / "t").write_text("\n")
    settings = TokenAuthSettings.model_validate(
        {"credentials": [{"name": "e", "token_file": str(tmp_path / "t")}]}
    )
    with pytest.raises(ConfigError, match="empty"):
        TokenAuthenticator.from_settings(settings)


# --- end to end -------------------------------------------------------------------

LIST = "/api/v2/tenants/default_tenant/databases/default_database/collections"


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        {"authorization": f"bearer {ADMIN_TOKEN}"},
        {"X-Chroma-Token": ADMIN_TOKEN},
        {"X-CHROMA-TOKEN": ADMIN_TOKEN},
    ],
)
def test_curl_style_requests(token_gateway: RunningGateway, headers: dict[str, str]) -> None:
    resp = httpx.get(token_gateway.url + LIST, headers=headers)
    assert resp.status_code == 200
    assert isinstance(resp.json(), list)


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"X-Chroma-Token": "nope"}, {"Authorization": "Token x"}],
)
def test_missing_or_wrong_token_is_401(token_gateway: RunningGateway, headers: dict[str, str]) -> None:
    resp = httpx.get(token_gateway.url + LIST, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] == "AuthError"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "nope" not in resp.text


@pytest.mark.slow
def test_probes_stay_open(token_gateway: RunningGateway) -> None:
    for path in ("/api/v2/heartbeat", "/api/v2/healthcheck", "/api/v2/version"):
        assert httpx.get(token_gateway.url + path).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("header", ["Authorization", "X-Chroma-Token"])
def test_python_client_with_token_provider(token_gateway: RunningGateway, header: str) -> None:
    host, port = token_gateway.url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(
        host=host,
        port=int(port),
        settings=ClientSettings(
            chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
            chroma_client_auth_credentials=ADMIN_TOKEN,
            chroma_auth_token_transport_header=header,
            anonymized_telemetry=False,
        ),
    )
    col = client.get_or_create_collection(f"token-{header.lower()}")
    col.upsert(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    assert col.count() == 2
    assert col.query(query_embeddings=[[1.0, 0.1]], n_results=1)["ids"] == [["a"]]


@pytest.mark.slow
def test_python_client_with_a_wrong_token_fails(token_gateway: RunningGateway) -> None:
    from chromadb.errors import ChromaAuthError

    host, port = token_gateway.url.removeprefix("http://").split(":")
    with pytest.raises(ChromaAuthError):
        chromadb.HttpClient(
            host=host,
            port=int(port),
            settings=ClientSettings(
                chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
                chroma_client_auth_credentials="wrong",
                anonymized_telemetry=False,
            ),
        )


@pytest.mark.slow
def test_gateway_accepting_only_x_chroma_token(chroma, secrets_dir: Path) -> None:  # type: ignore[no-untyped-def]
    config = token_config(chroma, secrets_dir)
    config["gateway"]["auth"]["token"]["headers"] = ["x-chroma-token"]  # type: ignore[index]
    with run_gateway(config) as gw:
        assert httpx.get(gw.url + LIST, headers={"X-Chroma-Token": READER_TOKEN}).status_code == 200
        assert (
            httpx.get(gw.url + LIST, headers={"Authorization": f"Bearer {READER_TOKEN}"}).status_code == 401
        )


def test_token_generate_cli() -> None:
    from typer.testing import CliRunner

    from chromactl.cli import app

    result = CliRunner().invoke(app, ["token", "generate"])
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert token.startswith("ck_") and len(token) > 40
    again = CliRunner().invoke(app, ["token", "generate"]).stdout.strip()
    assert again != token
