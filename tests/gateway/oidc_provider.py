"""The project's test OpenID provider (npm oidc-provider, ``js/oidc_server.mjs``), started on a
free port: client-credentials clients for the API tests, an authorization-code client with a
login page for the web console's."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.helpers import free_port, wait_until

#: The audience (resource) of the access tokens it issues.
AUDIENCE = "https://chroma.test"


def rsa_jwk(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return key, jwk


@contextlib.contextmanager
def provider(
    js_dir: Path,
    workdir: Path,
    jwks: dict[str, Any],
    host: str = "127.0.0.1",
    console_redirect_uris: list[str] | None = None,
) -> Iterator[str]:
    """An oidc-provider on a free port of ``host``; yields its issuer URL. The console's client
    returns to ``console_redirect_uris`` (default: ``http://127.0.0.1:<any port>``)."""
    port = free_port()
    issuer = f"http://{host}:{port}"
    jwks_file = workdir / f"jwks-{port}.json"
    jwks_file.write_text(json.dumps(jwks))
    log = (workdir / f"oidc-{port}.log").open("wb")
    proc = subprocess.Popen(
        ["node", "oidc_server.mjs", str(port), issuer, str(jwks_file), host],
        cwd=js_dir,
        env={**os.environ, "CONSOLE_REDIRECT_URIS": ",".join(console_redirect_uris or [])},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            return httpx.get(issuer + "/.well-known/openid-configuration", timeout=1).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "oidc-provider to start")
        yield issuer
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def get_token(issuer: str, client: str, resource: str = AUDIENCE) -> str:
    resp = httpx.post(
        issuer + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client,
            "client_secret": f"{client}-secret",
            "resource": resource,
            "scope": "chroma",
        },
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])
