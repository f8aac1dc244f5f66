"""The legacy-clients step: Chroma 0.4-0.6 clients served by Chroma 1.x (``docs/legacy-clients.md``).

Second in the chain, before the request is classified: an old client's request is rewritten
to the 1.x request (:mod:`chromactl.gateway.legacy`), so every later step decides on, counts,
journals and forwards what Chroma applies; the answer is rewritten back on its way out. A 1.x
request passes untouched (and never reaches this step on the fast path, which hands old
clients' requests to the ASGI app). ``gateway.legacy_clients: false`` leaves the step out.
"""

from __future__ import annotations

from collections.abc import Callable

from chromactl.gateway import legacy
from chromactl.gateway.context import CLIENT_API_KEY, find_context
from chromactl.gateway.principal import Principal
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

#: Credentials counted by name in the metric (configured ones: a bounded set); an OIDC subject
#: is counted as its method.
_NAMED_METHODS = frozenset({"token", "basic", "client_cert"})


class LegacyClientsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str = "",
        max_body_bytes: int,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.max_body_bytes = max_body_bytes
        #: Counts a translated request: (client_api, credential).
        self.on_request = on_request

    def translation(self, scope: Scope) -> legacy.Translation | None:
        path: str = scope["path"]
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return None
            path = path[len(self.prefix) :]
        return legacy.translate(scope["method"], path, scope.get("query_string") or b"", scope["headers"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        translation = self.translation(scope) if scope["type"] == "http" else None
        if translation is None:
            await self.app(scope, receive, send)
            return
        scope[CLIENT_API_KEY] = translation.client_api.value
        if translation.error:
            await send_refusal(send, Refusal(400, "InvalidArgumentError", translation.error))
            return
        path = self.prefix + translation.path
        scope["path"], scope["raw_path"] = path, path.encode()
        scope["query_string"] = translation.query_string
        if translation.fix_filters or translation.creates_collection:
            receive = await self._translated_body(scope, receive, translation)
        try:
            await self.app(scope, receive, _answer_back(send, translation))
        finally:
            ctx = find_context(scope)
            if self.on_request is not None and ctx is not None and ctx.principal is not None:
                self.on_request(translation.client_api.value, _credential(ctx.principal))

    async def _translated_body(
        self, scope: Scope, receive: Receive, translation: legacy.Translation
    ) -> Receive:
        """The body rewritten for 1.x, replayed to the later steps (a body over the limit is
        left as it is: the body-limit step refuses it)."""
        length = _content_length(scope)
        if length is None or length > self.max_body_bytes:
            return receive
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(b"".join(chunks), disconnected=True)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = legacy.request_body(translation, b"".join(chunks))
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        return _replay(body)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, *, disconnected: bool = False) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent or disconnected:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _answer_back(send: Send, translation: legacy.Translation) -> Send:
    """Chroma's answer rewritten for the old client: errors and collections are read whole
    (they are small), anything else passes as it comes."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            status = int(message["status"])
            if status >= 400 or translation.answer is not legacy.Answer.OTHER:
                start = message
                return
        elif message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = legacy.answer_body(translation, int(start["status"]), b"".join(chunks))
            headers = [(n, v) for n, v in start.get("headers", []) if n.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send(message)

    return wrapped


def _credential(principal: Principal) -> str:
    return principal.user_id if principal.method in _NAMED_METHODS else principal.method
