"""Static API tokens, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from chromactl.config import TokenAuthSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.auth.jwtshape import looks_like_jwt
from chromactl.gateway.principal import Grant, Principal
from chromactl.secrets import require_secret


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


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
        self._entries = [_Entry(_digest(tok), p) for tok, p in entries]
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
        """The principal whose token is ``value``; every entry is compared, in constant time."""
        digest = _digest(value)
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry.principal
        return found

    async def authenticate(self, presented: Presented) -> Principal | None:
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
