"""What every authenticator shares: the credential a request presents and failures."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from chromactl.gateway.principal import Principal


class Kind(enum.Enum):
    BEARER = "bearer"  #: ``Authorization: Bearer <value>``
    CHROMA_TOKEN = "x-chroma-token"  #: ``X-Chroma-Token: <value>``
    BASIC = "basic"  #: ``Authorization: Basic <base64(user:password)>``
    CLIENT_CERT = "client-certificate"  #: a name of the connection's verified certificate


@dataclass(frozen=True, slots=True)
class Presented:
    """One credential taken from the request headers."""

    kind: Kind
    value: str


class AuthFailure(Exception):
    """The credential was recognised but is not valid.

    ``reason`` is a short fixed label (a metrics label value); the message is for logs
    and for the 401 body, and never contains the credential.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Later(Exception):
    """A decision that needs I/O (a password hash computed in a thread, signing keys or a
    collection's owner to fetch): asked without waiting, it is left to the step's ``async``
    method, which waits for it."""


class Authenticator(Protocol):
    """Turns a presented credential into a :class:`Principal`.

    Returns None when the credential is not of its kind (the next one is tried); raises
    :class:`AuthFailure` when it is but does not check out.
    """

    name: str

    def authenticate_now(self, presented: Presented) -> Principal | None:
        """The same answer without waiting for anything, or :class:`Later`."""
        ...

    async def authenticate(self, presented: Presented) -> Principal | None: ...


def presented_credentials(headers: list[tuple[bytes, bytes]]) -> list[Presented]:
    """Credentials in ASGI headers (names already lower-case), in header order."""
    found: list[Presented] = []
    for name, raw in headers:
        if name == b"authorization":
            value = raw.decode("latin-1").strip()
            scheme, _, rest = value.partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                found.append(Presented(Kind.BEARER, rest.strip()))
            elif scheme == "basic":
                found.append(Presented(Kind.BASIC, rest.strip()))
        elif name == b"x-chroma-token":
            value = raw.decode("latin-1").strip()
            # The seed chart's documented command sends `${CHROMA_HEADER_NAME}: Bearer <token>`
            # whatever the header: a `Bearer ` word before the token is accepted here too.
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                value = rest.strip()
            found.append(Presented(Kind.CHROMA_TOKEN, value))
    return found
