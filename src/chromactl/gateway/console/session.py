"""The console's session: who signed in, sealed in a short-lived cookie.

The cookie holds what the browser signed in with (the ``Authorization`` header a token, a
basic user or an OIDC sign-in amounts to; nothing for a client certificate, which comes
with every TLS connection), encrypted and authenticated with AES-GCM under the console's
session key. Every console page sends it through the gateway's own authentication again:
a credential removed or a token expired ends the session at its next page, and no
principal is ever taken from the cookie itself.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it) and ``Secure`` behind TLS, where it is also named ``__Host-`` (bound to this
host and path ``/``). Nothing is stored in the browser but it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Associated data: a sealed value of another kind (the OIDC flow's state) is no session.
_SESSION = b"chromactl-console-session-v1"
_FLOW = b"chromactl-console-oidc-flow-v1"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: how, as whom (for the page header), until when."""

    method: str
    #: The ``Authorization`` header value the gateway authenticates (empty: the certificate).
    authorization: str
    user_id: str
    expires: float

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires


@dataclass(frozen=True)
class Flow:
    """An OIDC sign-in under way: what the callback checks (state, nonce) and needs (verifier)."""

    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    expires: float
    #: The console page to return to once signed in.
    next: str = ""


class SessionSealer:
    """Seals and opens sessions and flows with one 256-bit key (shared by every worker and pod
    that serves the same console: ``gateway.console.session_key_file``)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the console's session key must be at least 32 bytes")
        # All of the key counts (a file of text, such as the chart's, has fewer bits per byte).
        self._aead = AESGCM(hashlib.sha256(key).digest())

    @classmethod
    def random(cls) -> SessionSealer:
        return cls(secrets.token_bytes(32))

    def _seal(self, payload: dict[str, object], kind: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(), kind)
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def _open(self, value: str, kind: bytes) -> dict[str, object] | None:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], kind)
            payload = json.loads(plain)
        except (ValueError, InvalidTag):
            return None
        return payload if isinstance(payload, dict) else None

    def seal(self, session: Session) -> str:
        return self._seal(
            {"m": session.method, "a": session.authorization, "u": session.user_id, "e": session.expires},
            _SESSION,
        )

    def open(self, value: str, now: float | None = None) -> Session | None:
        """The session in a cookie, or None (tampered with, another key, expired)."""
        payload = self._open(value, _SESSION)
        if payload is None:
            return None
        try:
            session = Session(
                str(payload["m"]),
                str(payload["a"]),
                str(payload["u"]),
                float(payload["e"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError):
            return None
        return None if session.expired(now) else session

    def seal_flow(self, flow: Flow) -> str:
        return self._seal(
            {
                "s": flow.state,
                "n": flow.nonce,
                "v": flow.verifier,
                "r": flow.redirect_uri,
                "e": flow.expires,
                "x": flow.next,
            },
            _FLOW,
        )

    def open_flow(self, value: str, now: float | None = None) -> Flow | None:
        payload = self._open(value, _FLOW)
        if payload is None:
            return None
        try:
            flow = Flow(
                str(payload["s"]),
                str(payload["n"]),
                str(payload["v"]),
                str(payload["r"]),
                float(payload["e"]),  # type: ignore[arg-type]
                str(payload.get("x", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return None if (now if now is not None else time.time()) >= flow.expires else flow
