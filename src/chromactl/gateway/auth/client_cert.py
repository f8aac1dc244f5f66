"""Client certificates as an identity: the names of a certificate TLS has verified.

The HTTP protocol (:mod:`chromactl.gateway.protocol`) puts the verified peer certificate
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

from cryptography import x509
from cryptography.x509.oid import NameOID

from chromactl.config import ClientCertAuthSettings
from chromactl.gateway.auth.base import AuthFailure, Kind, Presented
from chromactl.gateway.principal import Grant, Principal
from chromactl.gateway.types import Scope


def certificate_names(cert: x509.Certificate) -> list[str]:
    """Subject common names, then DNS, URI and e-mail alternative names, in order."""
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for kind in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name):
            names += [str(v) for v in san.get_values_for_type(kind)]
    return list(dict.fromkeys(names))


def peer_tls(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension for a connection whose client certificate was verified."""
    ssl_object = transport.get_extra_info("ssl_object")
    # ssl only keeps a peer certificate that was verified against the client CA.
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return {"client_cert_name": cert.subject.rfc4514_string(), "client_cert_names": certificate_names(cert)}


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
        return self.authenticate_now(presented)

    def authenticate_now(self, presented: Presented) -> Principal | None:
        if presented.kind is not Kind.CLIENT_CERT:
            return None
        principal = self._identities.get(presented.value)
        if principal is None:
            raise AuthFailure(
                "unknown_certificate", f"client certificate name {presented.value!r} has no role"
            )
        return principal
