"""HTTP basic authentication against bcrypt hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

import anyio.to_thread
import bcrypt

from chromactl.config import BasicAuthSettings
from chromactl.errors import ConfigError
from chromactl.gateway.auth.base import AuthFailure, Kind, Later, Presented
from chromactl.gateway.principal import Grant, Principal
from chromactl.secrets import require_secret


class BasicAuthenticator:
    """Users with bcrypt password hashes; the plain password is never kept.

    bcrypt is slow by design, so a pair that verified is remembered for a while as an
    HMAC under a key made at start-up (never written anywhere).
    """

    name = "basic"

    def __init__(self, users: dict[str, tuple[bytes, Principal]], verified_cache_s: float = 300.0) -> None:
        self._users = users
        self._cache_s = verified_cache_s
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[float, Principal]] = {}
        # Compared against for unknown users, so they cost as much as known ones.
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(4))

    @classmethod
    def from_settings(cls, settings: BasicAuthSettings) -> BasicAuthenticator:
        users: dict[str, tuple[bytes, Principal]] = {}
        for cred in settings.users:
            username = cred.username or require_secret(cred.username_file, None, what="basic username")
            if cred.password_hash_file is not None:
                hashed = require_secret(cred.password_hash_file, None, what=f"password hash of {username}")
                if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                    raise ConfigError(f"{cred.password_hash_file} does not hold a bcrypt hash")
                pw_hash = hashed.encode()
            else:
                password = require_secret(
                    cred.password_file, cred.password_env, what=f"password of {username}"
                )
                pw_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(settings.bcrypt_rounds))
                del password
            if username in users:
                raise ConfigError(f"basic user {username!r} is configured twice")
            users[username] = (pw_hash, Principal(username, "basic", (Grant.from_config(cred),)))
        return cls(users, settings.verified_cache_s)

    def _cache_id(self, value: str) -> bytes:
        return hmac.new(self._cache_key, value.encode(), hashlib.sha256).digest()

    def authenticate_now(self, presented: Presented) -> Principal | None:
        """A pair verified a short while ago; any other needs bcrypt (:class:`Later`)."""
        if presented.kind is not Kind.BASIC:
            return None
        hit = self._verified.get(self._cache_id(presented.value))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        raise Later("bcrypt runs in a thread")

    async def authenticate(self, presented: Presented) -> Principal | None:
        try:
            return self.authenticate_now(presented)
        except Later:
            pass
        now = time.monotonic()
        cache_id = self._cache_id(presented.value)
        try:
            decoded = base64.b64decode(presented.value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFailure("malformed", "malformed basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthFailure("malformed", "malformed basic credentials")
        known = self._users.get(username)
        pw_hash = known[0] if known else self._dummy
        ok = await anyio.to_thread.run_sync(bcrypt.checkpw, password.encode(), pw_hash)
        if not ok or known is None:
            raise AuthFailure("invalid_password", "invalid user name or password")
        if self._cache_s > 0:
            if len(self._verified) > 10000:
                self._verified.clear()
            self._verified[cache_id] = (now + self._cache_s, known[1])
        return known[1]
