"""Static API tokens, found by the SHA-256 digest of what is presented (never compared as
text, so that the time of a comparison says nothing about a valid token)."""

from __future__ import annotations

import hashlib

from chromactl.config import TokenAuthSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.auth.jwtshape import looks_like_jwt
from chromactl.gateway.principal import Grant, Principal
from chromactl.secrets import require_secret


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenAuthenticator:
    """Accepts configured tokens from the configured headers."""

    name = "token"

    def __init__(
        self,
        entries: list[tuple[str, Principal]],
        kinds: set[Kind],
        *,
        defer_jwt: bool = False,
    ) -> None:
        #: By the SHA-256 of the token: the lookup compares digests of what was presented,
        #: which a caller cannot steer byte by byte, so it tells nothing about a valid token.
        self._by_digest: dict[bytes, Principal] = {}
        for token, principal in entries:
            self._by_digest.setdefault(_digest(token), principal)  # the first named wins
        self._kinds = kinds
        #: Leave unknown JWT-shaped values to the OIDC authenticator.
        self.defer_jwt = defer_jwt

    @classmethod
    def from_settings(cls, settings: TokenAuthSettings, *, defer_jwt: bool = False) -> TokenAuthenticator:
        entries = []
        for cred in settings.credentials:
            token = require_secret(cred.token_file, cred.token_env, what=f"token {cred.name!r}")
            entries.append((token, Principal(cred.name, "token", (Grant.from_config(cred),))))
        kinds = {Kind.BEARER if h == "authorization" else Kind.CHROMA_TOKEN for h in settings.headers}
        return cls(entries, kinds, defer_jwt=defer_jwt)

    def match(self, value: str) -> Principal | None:
        """The principal whose token is ``value``."""
        return self._by_digest.get(_digest(value))

    async def authenticate(self, presented: Presented) -> Principal | None:
        return self.authenticate_now(presented)

    def authenticate_now(self, presented: Presented) -> Principal | None:
        if presented.kind not in (Kind.BEARER, Kind.CHROMA_TOKEN):
            return None
        if presented.kind not in self._kinds:
            raise AuthFailure("header_not_allowed", f"tokens are not accepted in {presented.kind.value}")
        principal = self.match(presented.value)
        if principal is None and self.defer_jwt and looks_like_jwt(presented.value):
            return None
        if principal is None:
            raise AuthFailure("invalid_token", "invalid token")
        return principal
