"""OpenID Connect / JWT bearer tokens, verified with the issuer's published keys."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import httpx
import jwt

from chromactl.config import OIDCSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Later, Presented
from chromactl.gateway.auth.jwtshape import looks_like_jwt
from chromactl.gateway.principal import Grant, Principal

log = logging.getLogger("chromactl.gateway.oidc")

#: Algorithms that may ever be accepted; the config narrows this further.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class JWKSCache:
    """The issuer's signing keys: discovered, cached, fetched again on an unknown ``kid``."""

    def __init__(
        self,
        issuer: str,
        *,
        discovery_url: str | None = None,
        jwks_url: str | None = None,
        cache_s: float = 600.0,
        min_refresh_s: float = 10.0,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.issuer = issuer
        self._discovery_url = discovery_url or (issuer.rstrip("/") + "/.well-known/openid-configuration")
        self._jwks_url = jwks_url
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._verify = verify
        self._timeout_s = timeout_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        #: How many times the key set was fetched (for logs and tests).
        self.fetches = 0

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout_s) as client:
            if self._jwks_url is None:
                resp = await client.get(self._discovery_url)
                resp.raise_for_status()
                doc = resp.json()
                if doc.get("issuer") != self.issuer:
                    raise ValueError(
                        f"discovery document names issuer {doc.get('issuer')!r}, not {self.issuer!r}"
                    )
                self._jwks_url = str(doc["jwks_uri"])
            resp = await client.get(self._jwks_url)
            resp.raise_for_status()
            data = resp.json()
        keys: dict[str | None, jwt.PyJWK] = {}
        for jwk in data.get("keys", []):
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(jwk)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type or algorithm we do not use
            keys[jwk.get("kid")] = key
        self._keys = keys
        self._fetched_at = time.monotonic()
        self.fetches += 1
        log.info("fetched %d signing key(s) from %s", len(keys), self._jwks_url)

    async def get(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid`` (with no ``kid``: the only key, if there is one)."""
        now = time.monotonic()
        if now - self._fetched_at > self._cache_s or (
            self._lookup(kid) is None and now - self._fetched_at >= self._min_refresh_s
        ):
            async with self._lock:
                # Another request may have fetched while this one waited.
                if time.monotonic() - self._fetched_at >= min(self._min_refresh_s, self._cache_s):
                    try:
                        await self._fetch()
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        log.warning("cannot fetch signing keys for %s: %s", self.issuer, exc)
                        self._fetched_at = time.monotonic() - self._cache_s + self._min_refresh_s
        return self._lookup(kid)

    def known(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid`` when :meth:`get` would not fetch; :class:`Later` otherwise."""
        key = self._lookup(kid)
        if key is None or time.monotonic() - self._fetched_at > self._cache_s:
            raise Later("the signing keys are to be fetched")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)


def _claim(claims: dict[str, Any], path: str) -> object:
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _has_value(claim: object, value: str) -> bool:
    if isinstance(claim, str):
        return claim == value or value in claim.split()
    if isinstance(claim, list):
        return value in claim
    return False


_FAILURES: list[tuple[type[Exception], str, str]] = [
    (jwt.ExpiredSignatureError, "jwt_expired", "token has expired"),
    (jwt.ImmatureSignatureError, "jwt_not_yet_valid", "token is not valid yet"),
    (jwt.InvalidAudienceError, "jwt_audience", "token audience is not accepted"),
    (jwt.InvalidIssuerError, "jwt_issuer", "token issuer is not accepted"),
    (jwt.InvalidSignatureError, "jwt_signature", "token signature is invalid"),
    (jwt.MissingRequiredClaimError, "jwt_missing_claim", "token lacks a required claim"),
]


class OIDCAuthenticator:
    """Validates JWTs: signature by the issuer's keys, ``iss``, ``aud``, ``exp``/``nbf``."""

    name = "oidc"

    def __init__(self, settings: OIDCSettings, keys: JWKSCache | None = None) -> None:
        self._settings = settings
        self._algorithms = [a for a in settings.algorithms if a in ASYMMETRIC]
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        self.keys = keys or JWKSCache(
            settings.issuer,
            discovery_url=settings.discovery_url,
            jwks_url=settings.jwks_url,
            cache_s=settings.jwks_cache_s,
            min_refresh_s=settings.jwks_min_refresh_s,
            verify=verify,
        )
        self._default = Grant.from_config(settings.default_grant) if settings.default_grant else None
        self._rules = [(r.claim, r.value, Grant.from_config(r)) for r in settings.rules]

    def _principal(self, claims: dict[str, Any]) -> Principal:
        grants = [self._default] if self._default else []
        grants += [g for claim, value, g in self._rules if _has_value(_claim(claims, claim), value)]
        user = _claim(claims, self._settings.user_claim)
        return Principal(str(user) if user is not None else "", "oidc", tuple(grants))

    def authenticate_now(self, presented: Presented) -> Principal | None:
        if presented.kind not in (Kind.BEARER, Kind.CHROMA_TOKEN) or not looks_like_jwt(presented.value):
            return None
        alg, kid = self._algorithm_and_kid(presented.value)
        return self._principal(self._decode(presented.value, alg, self.keys.known(kid)))

    async def authenticate(self, presented: Presented) -> Principal | None:
        if presented.kind not in (Kind.BEARER, Kind.CHROMA_TOKEN) or not looks_like_jwt(presented.value):
            return None
        return self._principal(await self.verify(presented.value))

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or :class:`AuthFailure` saying why not."""
        alg, kid = self._algorithm_and_kid(token)
        return self._decode(token, alg, await self.keys.get(kid))

    def _algorithm_and_kid(self, token: str) -> tuple[str, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthFailure("jwt_malformed", "malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthFailure("jwt_algorithm", f"token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        return alg, kid if isinstance(kid, str) else None

    def _decode(self, token: str, alg: str, key: jwt.PyJWK | None) -> dict[str, Any]:
        if key is None:
            raise AuthFailure("jwt_unknown_key", "token is signed by an unknown key")
        if key.algorithm_name != alg and key.algorithm_name in ASYMMETRIC:
            raise AuthFailure("jwt_algorithm", "token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.clock_skew_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            for kind, reason, message in _FAILURES:
                if isinstance(exc, kind):
                    raise AuthFailure(reason, message) from None
            raise AuthFailure("jwt_invalid", "token is invalid") from None
        return claims
