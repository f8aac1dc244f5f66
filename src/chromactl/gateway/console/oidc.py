"""The console's OpenID Connect sign-in: the authorization-code flow with PKCE (RFC 7636).

The browser goes to the issuer's authorization endpoint with a fresh ``state``, ``nonce`` and
S256 code challenge (kept sealed in a short-lived cookie, :class:`~.session.Flow`), comes back
to ``/console/oidc/callback`` with a code, and the gateway exchanges it with the verifier. The
tokens it gets are then taken as the API takes a bearer token: the gateway's own OIDC
authentication decides whether they are good and who they name.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from chromactl.config import ConsoleOIDCSettings, OIDCSettings
from chromactl.gateway.console.session import Flow

#: How long a sign-in at the provider may take.
FLOW_TTL_S = 600.0
_TIMEOUT_S = 10.0


class SignInFailed(Exception):
    """The provider refused, or answered something the console cannot use."""


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint gave, the credentials to try in order (access token first)."""

    access_token: str
    id_token: str

    def credentials(self) -> list[str]:
        return [t for t in (self.access_token, self.id_token) if t]


def _nonce_matches(id_token: str, nonce: str) -> bool:
    """The ID token was issued for this sign-in (its signature is the gateway's
    authentication's to check, when the token is used)."""
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return bool(secrets.compare_digest(str(claims.get("nonce", "")), nonce))


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OIDCSignIn:
    """The flow against ``auth.issuer`` for the client ``console.client_id``."""

    def __init__(self, console: ConsoleOIDCSettings, auth: OIDCSettings) -> None:
        self.console = console
        self.auth = auth
        self._discovery: dict[str, Any] | None = None
        self._secret: str | None = None
        if console.client_secret_file is not None:
            self._secret = console.client_secret_file.read_text().strip()

    def _client(self) -> httpx.AsyncClient:
        verify: Any = str(self.auth.ca_file) if self.auth.ca_file is not None else True
        return httpx.AsyncClient(timeout=_TIMEOUT_S, verify=verify)

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = (
                self.auth.discovery_url or self.auth.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            try:
                async with self._client() as client:
                    answer = await client.get(url)
                    answer.raise_for_status()
                    document = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise SignInFailed(
                    f"the OpenID provider's discovery document ({url}) could not be read: {exc}"
                ) from exc
            if document.get("issuer") != self.auth.issuer:
                raise SignInFailed(
                    f"the discovery document names issuer {document.get('issuer')!r}, "
                    f"not {self.auth.issuer!r}"
                )
            self._discovery = document
        return self._discovery

    async def start(self, redirect_uri: str, next_path: str = "") -> tuple[str, Flow]:
        """The provider URL to send the browser to, and the flow to keep until it returns."""
        document = await self.discovery()
        verifier = secrets.token_urlsafe(48)
        flow = Flow(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=verifier,
            redirect_uri=redirect_uri,
            expires=time.time() + FLOW_TTL_S,
            next=next_path,
        )
        scopes = ["openid", *(s for s in self.console.scopes if s != "openid")]
        params = {
            "response_type": "code",
            "client_id": self.console.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
        resource = self.console.resource or self.auth.audience[0]
        if resource.startswith(("http://", "https://")):
            params["resource"] = resource
        return f"{document['authorization_endpoint']}?{urlencode(params)}", flow

    async def finish(self, flow: Flow, code: str) -> Tokens:
        """Exchange the code (with the flow's verifier) for tokens."""
        document = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow.redirect_uri,
            "client_id": self.console.client_id,
            "code_verifier": flow.verifier,
        }
        if self._secret is not None:
            form["client_secret"] = self._secret
        try:
            async with self._client() as client:
                answer = await client.post(document["token_endpoint"], data=form)
        except httpx.HTTPError as exc:
            raise SignInFailed(f"the OpenID provider's token endpoint could not be reached: {exc}") from exc
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict):
            error = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise SignInFailed(
                f"the OpenID provider refused the code ({answer.status_code}): {error or answer.text[:200]}"
            )
        id_token = str(body.get("id_token") or "")
        if id_token and not _nonce_matches(id_token, flow.nonce):
            raise SignInFailed("the ID token does not carry this sign-in's nonce (a replayed token?)")
        tokens = Tokens(str(body.get("access_token") or ""), id_token)
        if not tokens.credentials():
            raise SignInFailed("the OpenID provider answered no access token and no ID token")
        return tokens
