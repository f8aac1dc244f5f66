"""What the gateway knows about one request, shared by its steps: one typed object in the scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from chromactl.gateway.principal import Principal
from chromactl.gateway.routes import UNKNOWN, Route
from chromactl.gateway.types import Scope

#: The scope key that holds the :class:`RequestContext`.
SCOPE_KEY = "chromactl.context"
#: The scope key naming the API of an old client whose request was translated (``v1``,
#: ``v2-0.x``: :class:`chromactl.gateway.legacy.ClientApi`); absent for a 1.x request.
CLIENT_API_KEY = "chromactl.client_api"
#: The scope key marking a request the web console made for a signed-in browser (``console``).
VIA_KEY = "chromactl.via"


@dataclass
class RequestContext:
    """Set up by the classify step; the later steps fill in what they learn."""

    #: What the request is (the classify step).
    route: Route = UNKNOWN
    #: Who sent it (the authentication step); None before it or on public routes.
    principal: Principal | None = None
    #: The whole request body, when the body-limit step read it ahead.
    body: bytes | None = None
    #: The metrics step has counted the request.
    counted: bool = False
    #: The authorization step's decision: None until it decided (public routes never).
    allowed: bool | None = None
    #: Why the authorization step refused (``forbidden``, ``blocked``, ``cross_tenant``...).
    denied_because: str = ""
    #: What the metrics step measured, once the answer is sent.
    outcome: Outcome | None = None
    #: Seconds the connection is not read after this answer (a rate limit's wait).
    pause_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished request as the metrics step measured it."""

    status: int
    seconds: float
    request_bytes: int
    response_bytes: int
    #: Records in a write body (ids), when it is a write.
    records: int | None


def find_context(scope: Scope) -> RequestContext | None:
    """The request's context, or None before the classify step made it."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, RequestContext) else None


def request_context(scope: Scope) -> RequestContext:
    """The request's context, made (for an unclassified request) when there is none yet."""
    found = find_context(scope)
    if found is None:
        found = RequestContext()
        scope[SCOPE_KEY] = found
    return found


#: Request header whose value is used as the request id when present (bounded length).
REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` (printable, at most 128 characters) or a fresh one."""
    for name, value in scope.get("headers") or ():
        if name.lower() == REQUEST_ID_HEADER.encode():
            text = bytes(value).decode("latin-1")
            if 0 < len(text) <= _MAX_REQUEST_ID and text.isprintable():
                return text
    return uuid.uuid4().hex
