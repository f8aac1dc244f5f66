"""What the console reads, read as API requests through the whole gateway.

Each call is an ASGI request to the gateway's own chain (its outermost step), carrying the
session's ``Authorization`` header, or the browser's TLS connection for a client
certificate: the same authentication, authorization and tenant scope, limits, audit line and
metrics as an API client's request, by construction. The request is marked as the
console's (``via: console`` in its audit line), and only reads are ever sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from chromactl import __version__
from chromactl.gateway.context import SCOPE_KEY, VIA_KEY, RequestContext
from chromactl.gateway.principal import Principal
from chromactl.gateway.types import ASGIApp, Message, Scope

#: Answers larger than this are cut off (a page shows a bounded number of records).
MAX_ANSWER_BYTES = 32 << 20
_USER_AGENT = f"chromactl-console/{__version__}".encode()
_V2 = "/api/v2"
AGENT = "/chromactl/v1"


class ApiError(Exception):
    """The gateway (or Chroma behind it) answered an error: its status and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ConsoleApi:
    """The gateway's API as one signed-in browser may call it."""

    def __init__(self, app: ASGIApp, browser: Scope, authorization: str, prefix: str = "") -> None:
        self._app = app
        self._browser = browser
        self._authorization = authorization
        self._prefix = prefix
        #: A session without a header credential is the browser's certificate: only then does
        #: the browser's TLS connection go with the reads (a token session whose token was
        #: revoked must not go on as the certificate's identity).
        self._extensions = {} if authorization else dict(browser.get("extensions") or {})

    async def request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Answer:
        answer, _ = await self._call(method, path, body, query)
        return answer

    async def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> tuple[Answer, RequestContext | None]:
        """The answer, and what the gateway's steps learned of the request (its principal)."""
        raw = json.dumps(body).encode() if body is not None else b""
        headers = [(b"user-agent", _USER_AGENT), (b"accept", b"application/json")]
        if self._authorization:
            headers.append((b"authorization", self._authorization.encode("latin-1")))
        if raw:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        for name, value in self._browser.get("headers") or ():
            if name == b"x-request-id":
                headers.append((name, value))
        full = self._prefix + path
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": self._browser.get("scheme", "http"),
            "path": unquote(full),
            "raw_path": full.encode(),
            "root_path": "",
            "query_string": urlencode(query or {}).encode(),
            "headers": headers,
            "client": self._browser.get("client"),
            "server": self._browser.get("server"),
            "extensions": dict(self._extensions),
            VIA_KEY: "console",
        }
        sent = False
        status = 500
        chunks: list[bytes] = []
        size = 0

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ApiError(502, "TooLarge", "the answer is larger than the console shows")
                chunks.append(chunk)

        await self._app(scope, receive, send)
        answer = Answer(status, b"".join(chunks))
        if status >= 400:
            kind, message = "Error", answer.body.decode("utf-8", "replace")[:500]
            try:
                parsed = answer.json()
                if isinstance(parsed, dict):
                    kind = str(parsed.get("error") or kind)
                    message = str(parsed.get("message") or message)
            except ValueError:
                pass
            raise ApiError(status, kind, message)
        found = scope.get(SCOPE_KEY)
        return answer, found if isinstance(found, RequestContext) else None

    async def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return (await self.request("GET", path, query=query)).json()

    async def post(self, path: str, body: Any) -> Any:
        return (await self.request("POST", path, body)).json()

    # -- Chroma's API, the reads the console shows ------------------------------------------

    async def whoami(self) -> tuple[dict[str, Any], Principal]:
        """The identity the gateway answers, and the principal its authentication found."""
        answer, ctx = await self._call("GET", f"{_V2}/auth/identity")
        if ctx is None or ctx.principal is None:
            raise ApiError(401, "AuthError", "the gateway found no principal")
        return dict(answer.json()), ctx.principal

    async def version(self) -> str:
        return str(await self.get(f"{_V2}/version"))

    async def databases(self, tenant: str) -> list[dict[str, Any]]:
        return list(await self.get(f"{_V2}/tenants/{_seg(tenant)}/databases"))

    def _database(self, tenant: str, database: str) -> str:
        return f"{_V2}/tenants/{_seg(tenant)}/databases/{_seg(database)}"

    async def collections(self, tenant: str, database: str, limit: int, offset: int) -> list[dict[str, Any]]:
        query = {"limit": str(limit), "offset": str(offset)}
        return list(await self.get(f"{self._database(tenant, database)}/collections", query))

    async def count_collections(self, tenant: str, database: str) -> int:
        return int(await self.get(f"{self._database(tenant, database)}/collections_count"))

    async def collection(self, tenant: str, database: str, name: str) -> dict[str, Any]:
        return dict(await self.get(f"{self._database(tenant, database)}/collections/{_seg(name)}"))

    async def count(self, tenant: str, database: str, collection_id: str) -> int:
        return int(
            await self.get(f"{self._database(tenant, database)}/collections/{_seg(collection_id)}/count")
        )

    async def records(
        self, tenant: str, database: str, collection_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        path = f"{self._database(tenant, database)}/collections/{_seg(collection_id)}/get"
        return dict(await self.post(path, body))

    async def query(
        self, tenant: str, database: str, collection_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        path = f"{self._database(tenant, database)}/collections/{_seg(collection_id)}/query"
        return dict(await self.post(path, body))


def _seg(value: str) -> str:
    """One path segment, escaped (a name with ``/`` or ``?`` stays one segment)."""
    return quote(value, safe="")
