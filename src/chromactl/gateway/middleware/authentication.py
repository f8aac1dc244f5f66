"""The authentication step: credentials in, a principal on the request, or 401."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from chromactl.gateway.auth.base import Authenticator, AuthFailure, Later, Presented, presented_credentials
from chromactl.gateway.auth.client_cert import certificate_credentials
from chromactl.gateway.context import RequestContext, request_context
from chromactl.gateway.principal import ANONYMOUS_ADMIN, Principal
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Access
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("chromactl.gateway.auth")


class AuthenticationMiddleware:
    """Sets the context's ``principal`` or answers 401 ``AuthError``; probes pass untouched."""

    def __init__(
        self,
        app: ASGIApp,
        authenticators: Sequence[Authenticator],
        *,
        enabled: bool = True,
        challenges: Sequence[str] = ('Bearer realm="chroma"',),
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.authenticators = list(authenticators)
        self.enabled = enabled
        self.challenge = ", ".join(challenges)
        self.on_failure = on_failure
        #: Offer the connection's certificate names after the header credentials.
        self.certificates = any(a.name == "client_cert" for a in self.authenticators)

    def _presented(self, scope: Scope) -> list[Presented]:
        presented = presented_credentials(scope["headers"])
        if self.certificates:
            presented += certificate_credentials(scope)
        if not presented:
            raise AuthFailure("missing", "no credentials")
        return presented

    def authenticate_now(self, scope: Scope) -> Principal:
        """The principal, when every authenticator asked can answer without I/O (else
        :class:`Later`); :class:`AuthFailure` when none accepts the credentials."""
        first_failure: AuthFailure | None = None
        for cred in self._presented(scope):
            for authenticator in self.authenticators:
                try:
                    principal = authenticator.authenticate_now(cred)
                except AuthFailure as failure:
                    first_failure = first_failure or failure
                    break
                if principal is not None:
                    return principal
        raise first_failure or AuthFailure("unsupported", "no accepted credentials")

    async def authenticate(self, scope: Scope) -> Principal:
        """As :meth:`authenticate_now`, waiting for what needs I/O."""
        first_failure: AuthFailure | None = None
        for cred in self._presented(scope):
            for authenticator in self.authenticators:
                try:
                    principal = await authenticator.authenticate(cred)
                except AuthFailure as failure:
                    first_failure = first_failure or failure
                    break
                if principal is not None:
                    return principal
        raise first_failure or AuthFailure("unsupported", "no accepted credentials")

    def decide_now(self, scope: Scope, ctx: RequestContext) -> Refusal | None:
        """:meth:`decide` without waiting: raises :class:`Later` when an authenticator needs
        I/O (nothing is set or counted then)."""
        if ctx.route.access is Access.PUBLIC:
            return None
        if not self.enabled:
            ctx.principal = ANONYMOUS_ADMIN
            return None
        try:
            ctx.principal = self.authenticate_now(scope)
        except AuthFailure as failure:
            return self._failed(scope, failure)
        return None

    async def decide(self, scope: Scope, ctx: RequestContext) -> Refusal | None:
        """Set ``ctx.principal`` for a route that needs one, or the 401 to answer."""
        try:
            return self.decide_now(scope, ctx)
        except Later:
            pass
        try:
            ctx.principal = await self.authenticate(scope)
        except AuthFailure as failure:
            return self._failed(scope, failure)
        return None

    def _failed(self, scope: Scope, failure: AuthFailure) -> Refusal:
        if self.on_failure is not None:
            self.on_failure(failure.reason)
        log.info(
            "authentication failed",
            extra={"reason": failure.reason, "path": scope.get("path"), "client": _client(scope)},
        )
        challenge = self.challenge
        if failure.reason.startswith("jwt_") or failure.reason == "invalid_token":
            challenge = challenge.replace(
                'Bearer realm="chroma"', 'Bearer realm="chroma", error="invalid_token"'
            )
        return Refusal(401, "AuthError", f"Unauthorized: {failure}", (("www-authenticate", challenge),))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self.decide(scope, request_context(scope))
            if refusal is not None:
                await send_refusal(send, refusal)
                return
        await self.app(scope, receive, send)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""
