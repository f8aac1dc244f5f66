"""The limits step: rate limits and quotas per credential and per tenant, for the whole pod.

After authorization, each request is counted against the rules of its credential and of its
tenant (``gateway.limits``; a rule named ``*`` applies to every credential or tenant without
one of its own):

- ``requests_per_second`` with ``burst``: a token bucket;
- ``concurrent_requests``: requests in flight at once;
- ``records_per_minute``: records written (ids of adds, updates, upserts, deletes), a token
  bucket refilled over a minute; a batch larger than the whole minute passes when the bucket
  is full, and the bucket then owes it;
- tenants only, hard caps: ``max_collections`` (checked before a collection is created) and
  ``max_records_per_collection`` (before an add or upsert: the collection's records plus the
  ids it does not hold yet).

Over a rate: ``429 {"error": "RateLimitError"}`` with ``Retry-After`` (seconds until a token
is there). Over a cap: ``400 {"error": "QuotaError"}``, as Chroma answers for its own quotas;
retrying cannot help. Both are what Chroma's clients raise as ``RateLimitError`` and
``QuotaError``. After a 429 over ``requests_per_second`` the connection is not read again
until that wait has passed (``pause_refused_connections``; the protocol pauses it): a client
that ignores ``Retry-After`` and sends again at once waits anyway, and the gateway's time goes
to other clients.

The counters live in a table of shared memory (:mod:`chromactl.gateway.limits_table`), so that
the limits hold for the pod and not per worker; the rules
(:mod:`chromactl.gateway.limits_rules`) are re-read when ``gateway.limits.file`` changes (a
mounted ConfigMap), without a restart; the caps are counted in Chroma's database
(:mod:`chromactl.gateway.quotas`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from chromactl.config import LimitRule, LimitsSettings
from chromactl.gateway.context import RequestContext, find_context
from chromactl.gateway.limits_rules import RulesFile
from chromactl.gateway.limits_table import Refused, SharedTable
from chromactl.gateway.podlocks import BUCKETS, PodLocks
from chromactl.gateway.proxy import read_body
from chromactl.gateway.quotas import Quotas
from chromactl.gateway.request_metrics import count_ids
from chromactl.gateway.responses import Refusal, send_refusal
from chromactl.gateway.routes import RECORD_WRITES, Access, Operation, Route
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send

GROWING_OPS = {Operation.COLLECTION_ADD, Operation.COLLECTION_UPSERT}


def _ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    ids = data.get("ids") if isinstance(data, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else []


#: The refusal whose connection is left unread until its wait passed: over the request rate,
#: the credential's next request would be refused too. (Over ``records_per_minute`` its reads
#: may still pass; over ``concurrent_requests`` the wait is not known.)
PAUSED_LIMIT = "requests_per_second"
#: The longest a refused connection is left unread (a very low rate names a longer wait).
MAX_PAUSE_S = 10.0

#: The lock bucket of tenant-wide caps (collections per tenant): past the collections'.
_TENANT_BUCKET = BUCKETS + 1
#: Names the refusal tally keeps apart.
_REFUSAL_NAMES = 1000


class LimitsMiddleware:
    """Counts each authorized request against its credential's and its tenant's rules."""

    def __init__(
        self,
        app: ASGIApp,
        table: SharedTable,
        rules: RulesFile,
        quotas: Quotas | None,
        locks: PodLocks,
        on_limited: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        pause_refused: bool = True,
    ) -> None:
        self.app = app
        #: A 429's connection waits out the refusal's wait before its next request is read.
        self.pause_refused = pause_refused
        self.table = table
        self.rules = rules
        self.quotas = quotas
        self.locks = locks
        self.on_limited = on_limited
        self.clock = clock
        #: Refusals of this process by (credential|tenant, its name, limit): the console's
        #: limits page (a bounded table; names past it are counted under ``...``).
        self.refusals: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def _rules(self, ctx: RequestContext) -> tuple[list[tuple[str, str, LimitRule]], LimitRule | None]:
        """The rules that count this request (key, credential|tenant, rule), and its tenant's."""
        assert ctx.principal is not None
        rules = self.rules.current()
        route = ctx.route
        tenant_rule = rules.tenant(route.tenant) if route.tenant else None
        counted = [
            (f"credential:{ctx.principal.user_id}", "credential", rules.credential(ctx.principal.user_id)),
            (f"tenant:{route.tenant}", "tenant", tenant_rule),
        ]
        return [(key, kind, rule) for key, kind, rule in counted if rule is not None], tenant_rule

    def _refusal(self, key: str, refused: Refused) -> Refusal:
        kind, _, name = key.partition(":")
        self.on_limited(kind, refused.limit)
        counted = (kind, name, refused.limit)
        if counted not in self.refusals and len(self.refusals) >= _REFUSAL_NAMES:
            counted = (kind, "...", refused.limit)
        self.refusals[counted] += 1
        if refused.is_quota:
            return Refusal(400, "QuotaError", str(refused))
        wait = str(max(1, math.ceil(refused.retry_after or 1.0)))
        return Refusal(429, "RateLimitError", str(refused), (("retry-after", wait),))

    def reads_body(self, route: Route) -> bool:
        """A rule may need this write's body (``records_per_minute``, the tenant caps), whoever
        sends it: such writes are this step's to serve whole."""
        rules = self.rules.current()
        every = [*rules.credentials.values(), *rules.tenants.values()]
        if route.operation in RECORD_WRITES and any(r.records_per_minute for r in every):
            return True
        capped = route.operation is Operation.CREATE_COLLECTION or route.operation in GROWING_OPS
        return capped and any(
            r.max_collections is not None or r.max_records_per_collection is not None for r in every
        )

    def admit(
        self, ctx: RequestContext, records: int = 0, found: list[tuple[str, str, LimitRule]] | None = None
    ) -> tuple[list[tuple[str, LimitRule]], Refusal | None]:
        """Count a request (writing ``records``) against its rates: what it took (give it back
        with :meth:`release` once answered), or the refusal."""
        if found is None:
            found, _ = self._rules(ctx)
        taken: list[tuple[str, LimitRule]] = []
        key = ""
        try:
            now = self.clock()
            for key, _, rule in found:
                self.table.take(key, rule, records, now)
                taken.append((key, rule))
        except Refused as refused:
            self.release(taken)
            if self.pause_refused and refused.limit == PAUSED_LIMIT and refused.retry_after:
                ctx.pause_s = min(refused.retry_after, MAX_PAUSE_S)
            return [], self._refusal(key, refused)
        return taken, None

    def release(self, taken: list[tuple[str, LimitRule]]) -> None:
        for key, rule in taken:
            self.table.done(key, rule)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        if ctx is None or ctx.principal is None or not ctx.allowed or ctx.route.access is Access.AGENT:
            await self.app(scope, receive, send)
            return
        route = ctx.route
        found, tenant_rule = self._rules(ctx)
        if not found:
            await self.app(scope, receive, send)
            return
        records = 0
        if route.operation in RECORD_WRITES and any(r.records_per_minute for _, _, r in found):
            if ctx.body is None:
                ctx.body = await read_body(receive)
            records = count_ids(ctx.body) or 0
        taken, refusal = self.admit(ctx, records, found)
        if refusal is not None:
            await send_refusal(send, refusal)
            return
        try:
            async with self._capped(route, tenant_rule):
                if tenant_rule is not None:
                    await self._check_caps(route, tenant_rule, ctx, receive)
                await self.app(scope, receive, send)
        except Refused as refused:
            await send_refusal(send, self._refusal(f"tenant:{route.tenant}", refused))
        finally:
            self.release(taken)

    @contextlib.asynccontextmanager
    async def _capped(self, route: Route, rule: LimitRule | None) -> AsyncIterator[None]:
        """A write a cap checks holds a lock of the pod from the check to Chroma's answer, so
        that two writes cannot both pass a check that only one of them fits."""
        if (
            rule is not None
            and route.operation is Operation.CREATE_COLLECTION
            and rule.max_collections is not None
        ):
            async with self.locks.held(_TENANT_BUCKET):
                yield
        elif (
            rule is not None
            and route.operation in GROWING_OPS
            and rule.max_records_per_collection is not None
        ):
            async with self.locks.held(PodLocks.bucket(route.collection)):
                yield
        else:
            yield

    async def _check_caps(self, route: Route, rule: LimitRule, ctx: RequestContext, receive: Receive) -> None:
        quotas = self.quotas
        if quotas is None:
            return
        if route.operation is Operation.CREATE_COLLECTION and rule.max_collections is not None:
            have = await asyncio.to_thread(quotas.collections, route.tenant)
            if have >= rule.max_collections:
                raise Refused(
                    "max_collections",
                    f"tenant {route.tenant} holds {have} collections, its limit is {rule.max_collections}",
                )
        if route.operation in GROWING_OPS and rule.max_records_per_collection is not None:
            if ctx.body is None:
                ctx.body = await read_body(receive)
            after = await asyncio.to_thread(quotas.records_after, route.collection, _ids(ctx.body))
            if after > rule.max_records_per_collection:
                raise Refused(
                    "max_records_per_collection",
                    f"collection {route.collection} would hold {after} records; tenant {route.tenant} "
                    f"allows {rule.max_records_per_collection} per collection",
                )


def build_limits(
    app: ASGIApp,
    settings: LimitsSettings,
    database: Path,
    process: int,
    on_limited: Callable[[str, str], None],
) -> LimitsMiddleware:
    """The limits step of one gateway process (``process``: its number in the pod)."""
    state = settings.state_dir or Path(tempfile.mkdtemp(prefix="chromactl-limits-"))
    rules = RulesFile(settings)
    capped = any(
        r.max_collections is not None or r.max_records_per_collection is not None
        for r in rules.rules.tenants.values()
    )
    quotas = Quotas(database) if capped or settings.file is not None else None
    return LimitsMiddleware(
        app,
        SharedTable(state / "limits.table", process),
        rules,
        quotas,
        PodLocks(state / "limits.locks"),
        on_limited,
        pause_refused=settings.pause_refused_connections,
    )
