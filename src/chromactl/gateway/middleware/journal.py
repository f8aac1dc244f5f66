"""The journal step: writes Chroma acknowledged go to the journal (:mod:`chromactl.gateway.journal_writer`).

It runs inside the write gate, so a snapshot's hold never falls between a write and its
entry. Writes to one collection take that collection's journal lock (one lock of
:data:`BUCKETS`, held across gateway processes with ``fcntl``), so their entries are in the
order Chroma applied them; catalog changes take one lock of their own. What is recorded:

- record writes answered 2xx: the body as sent; a delete by filter first asks Chroma which
  ids the filter matches (under the lock, nothing else can change them);
- catalog changes answered 2xx (collections, databases, tenants): their rows, read from
  Chroma's database once it answered;
- any write answered 5xx, cut off, or not understood: a ``break``, as Chroma may hold a
  change the journal cannot replay (the backup service starts a new base snapshot).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from chromactl import chromadata
from chromactl.errors import ChromactlError
from chromactl.gateway.context import find_context
from chromactl.gateway.journal_writer import Journal
from chromactl.gateway.podlocks import BUCKETS, PodLocks
from chromactl.gateway.proxy import read_body
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import Operation, Route
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send
from chromactl.gateway.upstream import Upstream

log = logging.getLogger("chromactl.gateway.journal")

#: Catalog changes take one lock of their own (past the collections' buckets).
_CATALOG_BUCKET = BUCKETS
RECORD_OPS = {
    Operation.COLLECTION_ADD: "add",
    Operation.COLLECTION_UPDATE: "update",
    Operation.COLLECTION_UPSERT: "upsert",
    Operation.COLLECTION_DELETE_RECORDS: "delete",
}
CATALOG_OPS = {
    Operation.CREATE_COLLECTION,
    Operation.UPDATE_COLLECTION,
    Operation.DELETE_COLLECTION,
    Operation.CREATE_DATABASE,
    Operation.DELETE_DATABASE,
    Operation.CREATE_TENANT,
    Operation.UPDATE_TENANT,
}
_FILTERS = ("where", "where_document")


#: Journals Chroma's answer (status, body); the entry's replication index, if any.
OnAnswer = Callable[[int, bytes], Awaitable[int | None]]
#: Called with that index before the answer goes out; raises to answer 503 instead.
Confirm = Callable[[int | None], Awaitable[None]]
#: Forwards the write to Chroma, calling ``on_answer`` once its answer is whole and before it
#: goes out (the ASGI app's proxy, or the fast path's connection).
Forward = Callable[[OnAnswer], Awaitable[None]]


def unconfirmed(exc: ChromactlError) -> Refusal:
    """The answer to a write Chroma applied but that could not be confirmed (high availability)."""
    return Refusal(503, "ServiceUnavailable", str(exc), (("retry-after", "1"), ("connection", "close")))


class _Answer:
    """Wraps ``send``: Chroma's answer is held until it is whole, journaled by ``on_answer``
    (status, body), confirmed by ``confirm`` (high availability), and only then passed on,
    so that a write the client saw acknowledged is in the journal (and on a standby)."""

    def __init__(self, send: Send, on_answer: OnAnswer, confirm: Confirm) -> None:
        self._send = send
        self._on_answer = on_answer
        self._confirm = confirm
        self._held: list[Message] = []
        self.status: int | None = None
        #: ``on_answer`` ran: the outcome is journaled.
        self.journaled = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self._held.append(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        self._held.append(message)
        if message.get("more_body", False):
            return
        assert self.status is not None
        self.journaled = True
        index = await self._on_answer(self.status, b"".join(m.get("body", b"") for m in self._held[1:]))
        try:
            await self._confirm(index)
        except ChromactlError as exc:
            self._held = []
            await send_refusal(self._send, unconfirmed(exc))
            return
        held, self._held = self._held, []
        for m in held:
            await self._send(m)


class JournalMiddleware:
    """Records every write Chroma acknowledged (see the module doc)."""

    def __init__(self, app: ASGIApp, journal: Journal, upstream: Upstream) -> None:
        self.app = app
        self.journal = journal
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        route = ctx.route if ctx is not None else None
        if ctx is None or route is None or not route.is_write:
            await self.app(scope, receive, send)
            return
        body = ctx.body if ctx.body is not None else await read_body(receive)
        ctx.body = body
        await self.journaled(
            scope, route, body, lambda on_answer: self._forward(scope, receive, send, on_answer)
        )

    async def journaled(self, scope: Scope, route: Route, body: bytes, forward: Forward) -> None:
        """The write (its whole ``body``) under its journal lock, forwarded by ``forward``."""
        if route.operation in RECORD_OPS:
            async with self.journal.locks.held(PodLocks.bucket(route.collection)):
                await self._records(scope, route, body, forward)
        else:
            async with self.journal.locks.held(_CATALOG_BUCKET):
                await self._catalog(scope, route, body, forward)

    async def _records(self, scope: Scope, route: Route, body: bytes, forward: Forward) -> None:
        op = RECORD_OPS[route.operation]
        ids = await self._filtered_ids(scope, body) if op == "delete" else None

        async def on_answer(status: int, _: bytes) -> int | None:
            if not 200 <= status < 300:
                return self.unless_refused(scope, status)
            if op == "delete" and ids is None and _has_filter(body):
                return self.journal.record(
                    "break", reason=f"delete by filter in {route.collection}: ids unknown"
                )
            return self.journal.record("records", op=op, collection=route.collection, ids=ids, body=body)

        await forward(on_answer)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, on_answer: OnAnswer) -> None:
        """Forward to Chroma, journaling its answer with ``on_answer``; a write left without
        a whole answer has an unknown outcome."""
        answer = _Answer(send, on_answer, self.journal.confirm)
        try:
            await self.app(scope, receive, answer)
        finally:
            if not answer.journaled:
                self.unless_refused(scope, answer.status)

    async def settle(self, on_answer: OnAnswer, status: int, body: bytes) -> Refusal | None:
        """Journal Chroma's whole answer and confirm it (the fast path's ``_Answer``): None, or
        the refusal to send instead when it could not be confirmed."""
        index = await on_answer(status, body)
        try:
            await self.journal.confirm(index)
        except ChromactlError as exc:
            return unconfirmed(exc)
        return None

    def unless_refused(self, scope: Scope, status: int | None) -> int | None:
        """A break, unless Chroma refused the write (4xx: nothing changed)."""
        if status is None or status >= 500:
            what = f"{scope['method']} {scope['path']}"
            return self.journal.record("break", reason=f"{what}: {status or 'no answer'} from Chroma")
        return None

    async def _filtered_ids(self, scope: Scope, body: bytes) -> list[str] | None:
        """The ids a delete by filter matches now; None when it has no filter (or Chroma
        could not say)."""
        if not _has_filter(body):
            return None
        data = json.loads(body)
        query = {k: data[k] for k in ("ids", *_FILTERS) if data.get(k) is not None}
        query["include"] = []
        path = scope["path"].rsplit("/", 1)[0] + "/get"
        try:
            resp = await self.upstream.request(
                "POST", path, [(b"content-type", b"application/json")], json.dumps(query).encode()
            )
            try:
                found = json.loads(await resp.read()) if resp.status == 200 else None
            finally:
                await resp.aclose()
        except Exception as exc:
            log.warning("cannot resolve a delete by filter for the journal: %s", exc)
            return None
        if not isinstance(found, dict) or not isinstance(found.get("ids"), list):
            return None
        return [str(i) for i in found["ids"]]

    async def _catalog(self, scope: Scope, route: Route, body: bytes, forward: Forward) -> None:
        op = route.operation
        known = op in CATALOG_OPS
        affected: list[str] = []
        if op is Operation.UPDATE_COLLECTION:
            affected = [route.collection]
        elif op is Operation.DELETE_COLLECTION:
            affected = await self.journal.lookup(
                chromadata.COLLECTION_ID_SQL, route.tenant, route.database, route.collection
            )
        elif op is Operation.DELETE_DATABASE:
            affected = await self.journal.lookup(
                chromadata.DATABASE_COLLECTIONS_SQL, route.tenant, route.database
            )

        async def on_answer(status: int, answer: bytes) -> int | None:
            if not 200 <= status < 300:
                return self.unless_refused(scope, status)
            if not known:
                return self.journal.record("break", reason=f"{op.value}: not replayable")
            found = _created_id(answer) if op is Operation.CREATE_COLLECTION else affected
            try:
                catalog = await self.journal.catalog(found)
            except Exception as exc:
                return self.journal.record("break", reason=f"cannot read the catalog after {op.value}: {exc}")
            return self.journal.record("catalog", op=op.value, catalog=catalog)

        await forward(on_answer)


def _has_filter(body: bytes) -> bool:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return False
    return isinstance(data, dict) and any(data.get(k) for k in _FILTERS)


def _created_id(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    cid = data.get("id") if isinstance(data, dict) else None
    return [str(cid)] if cid else []
