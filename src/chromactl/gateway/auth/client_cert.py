"""Client certificates as an identity: the names of a certificate TLS has verified.

The HTTP protocol (:class:`PeerCertificateProtocol`) puts the verified peer certificate
of the connection into each request's ASGI scope under ``extensions.tls`` (with the
subject as ``client_cert_name``, as the ASGI TLS extension names it); the authentication
step offers the certificate's names as credentials after those in the headers, and
:class:`ClientCertAuthenticator` maps a name to its configured role and scope. TLS does
the verification (``tls.client_auth`` against ``tls.client_ca_file``): an unverified
certificate never reaches the scope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chromactl.config import ClientCertAuthSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.principal import Grant, Principal
from chromactl.gateway.types import Scope

#: Subject alternative name types that name a client (not IP addresses).
_SAN_TYPES = ("DNS", "URI", "email")


def certificate_names(peercert: dict[str, Any]) -> list[str]:
    """Subject common names, then DNS, URI and e-mail alternative names, in order."""
    names = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
    names += [value for kind, value in peercert.get("subjectAltName", ()) if kind in _SAN_TYPES]
    return list(dict.fromkeys(names))


def _subject(peercert: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for rdn in reversed(peercert.get("subject", ())) for key, value in rdn)


class PeerCertificateProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that hands the verified client certificate to the app."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Filled in by ssl only when the certificate was verified against the client CA.
        peercert = transport.get_extra_info("peercert")
        self._peer_tls: dict[str, Any] | None = (
            {"client_cert_name": _subject(peercert), "client_cert_names": certificate_names(peercert)}
            if peercert
            else None
        )
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer_tls is not None:
            self.scope["extensions"] = {"tls": self._peer_tls}  # type: ignore[typeddict-unknown-key]


def certificate_credentials(scope: Scope) -> list[Presented]:
    tls = scope.get("extensions", {}).get("tls") or {}
    return [Presented(Kind.CLIENT_CERT, name) for name in tls.get("client_cert_names", ())]


class ClientCertAuthenticator:
    """Maps a verified certificate name to a configured identity."""

    name = "client_cert"

    def __init__(self, settings: ClientCertAuthSettings) -> None:
        self._identities = {
            i.name: Principal(i.name, "client_cert", (Grant.from_config(i),)) for i in settings.identities
        }

    async def authenticate(self, presented: Presented) -> Principal | None:
        if presented.kind is not Kind.CLIENT_CERT:
            return None
        principal = self._identities.get(presented.value)
        if principal is None:
            raise AuthFailure(
                "unknown_certificate", f"client certificate name {presented.value!r} has no role"
            )
        return principal
