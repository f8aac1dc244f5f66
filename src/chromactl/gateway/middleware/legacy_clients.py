"""The legacy-clients step: Chroma 0.4-0.6 clients served by Chroma 1.x (``docs/legacy-clients.md``).

Second in the chain, before the request is classified: an old client's request is rewritten
to the 1.x request (:mod:`chromactl.gateway.legacy`), so every later step decides on, counts,
journals and forwards what Chroma applies; the answer is rewritten back on its way out. A 1.x
request passes untouched (and never reaches this step on the fast path, which hands old
clients' requests to the ASGI app). ``gateway.legacy_clients: false`` leaves the step out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chromactl.gateway import legacy
from chromactl.gateway.context import CLIENT_API_KEY, find_context
from chromactl.gateway.middleware.body_timeout import RequestBodyTimeout, receive_in_time, refuse_too_slow
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
        body_timeout_s: float,
        body_deadline_s: float,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        #: A body it rewrites is read here, before the body steps: bounded as they bound it.
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.body_deadline_s = body_deadline_s
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
            try:
                receive = await self._translated_body(scope, receive, translation)
            except RequestBodyTimeout:
                await refuse_too_slow(scope, send)
                return
            except legacy.Refused as refused:
                await send_refusal(send, Refusal(400, "InvalidArgumentError", str(refused)))
                return
        try:
            await self.app(scope, receive, _answer_back(send, translation))
        finally:
            ctx = find_context(scope)
            if self.on_request is not None and ctx is not None and ctx.principal is not None:
                self.on_request(translation.client_api.value, _credential(ctx.principal))

    async def _translated_body(
        self, scope: Scope, receive: Receive, translation: legacy.Translation
    ) -> Receive:
        """The body rewritten for 1.x, replayed to the later steps. It is read as the body steps
        read one (each wait and the whole body bounded: :class:`RequestBodyTimeout`); a body
        without a length or over the limit is passed on as it is, for the body-limit step."""
        length = _content_length(scope)
        if length is None or length > self.max_body_bytes:
            return receive
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_deadline_s
        while True:
            message = await receive_in_time(receive, self.body_timeout_s, deadline)
            if message["type"] != "http.request":
                return _replay([b"".join(chunks)], receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes or not message.get("more_body", False):
                break
        if message.get("more_body", False):  # more than its length said: the limit step refuses it
            return _replay(chunks, receive, more=True)
        body = legacy.request_body(translation, b"".join(chunks))
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        return _replay([body], receive)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(chunks: list[bytes], rest: Receive, *, more: bool = False) -> Receive:
    """``chunks`` (what was read of the body) as the body's first messages, then ``rest``
    (the rest of the body when ``more``; else what comes after a body: a disconnect)."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or more}
        return await rest()

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
