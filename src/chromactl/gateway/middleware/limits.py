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
``QuotaError``.

The counters live in a table of shared memory (a file the gateway processes of the pod map),
each slot locked with ``fcntl`` while it is updated, so that the limits hold for the pod and
not per worker. In-flight counts are kept per process, so a worker that dies leaves none
behind. The rules are re-read when ``gateway.limits.file`` changes (a mounted ConfigMap),
without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import mmap
import os
import struct
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from chromactl import chromadata
from chromactl.config import LimitRule, LimitsSettings
from chromactl.gateway.context import RequestContext, find_context
from chromactl.gateway.podlocks import BUCKETS, PodLocks
from chromactl.gateway.proxy import read_body
from chromactl.gateway.request_metrics import count_ids
from chromactl.gateway.responses import send_error
from chromactl.gateway.routes import Access, Operation, Route
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("chromactl.gateway.limits")

#: Slots of the shared table, and the gateway processes one slot counts in-flight requests for.
SLOTS = 4096
PROCESSES = 64
#: key hash, request tokens, their time, record tokens, their time, then in-flight per process.
_HEAD = struct.Struct("<Qdddd")
_FLIGHT = struct.Struct(f"<{PROCESSES}i")
SLOT_BYTES = _HEAD.size + _FLIGHT.size
PROBES = 8
RECORD_OPS = {
    Operation.COLLECTION_ADD,
    Operation.COLLECTION_UPDATE,
    Operation.COLLECTION_UPSERT,
    Operation.COLLECTION_DELETE_RECORDS,
}
GROWING_OPS = {Operation.COLLECTION_ADD, Operation.COLLECTION_UPSERT}


class Refused(Exception):
    """A request over a limit: ``limit`` names it (the rule's field)."""

    def __init__(self, limit: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after

    @property
    def is_quota(self) -> bool:
        return self.limit.startswith("max_")


class SharedTable:
    """Token buckets and in-flight counts in a file every gateway process maps."""

    def __init__(self, path: Path, process: int) -> None:
        if not 0 <= process < PROCESSES:
            raise ValueError(f"gateway process number {process} is not below {PROCESSES}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < SLOTS * SLOT_BYTES:
            os.ftruncate(self._fd, SLOTS * SLOT_BYTES)
        self._map = mmap.mmap(self._fd, SLOTS * SLOT_BYTES)
        self.process = process
        self._forget_own_flights()

    def _forget_own_flights(self) -> None:
        """A process starting again (a restarted worker) had no request in flight."""
        for slot in range(SLOTS):
            with self._locked(slot):
                self._set_flight(slot, 0)

    @contextlib.contextmanager
    def _locked(self, slot: int) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, slot * SLOT_BYTES)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot * SLOT_BYTES)

    def _slot(self, key: str) -> int:
        """The slot of ``key`` (claimed when free); shared with another key when all probed
        slots are taken (they then share limits)."""
        digest = zlib.crc32(key.encode()) | (len(key) << 32) | 1
        first = digest % SLOTS
        for i in range(PROBES):
            slot = (first + i) % SLOTS
            with self._locked(slot):
                found = _HEAD.unpack_from(self._map, slot * SLOT_BYTES)[0]
                if found == digest:
                    return slot
                if found == 0:
                    _HEAD.pack_into(self._map, slot * SLOT_BYTES, digest, math.nan, 0.0, math.nan, 0.0)
                    return slot
        return first

    def _set_flight(self, slot: int, value: int) -> None:
        struct.pack_into("<i", self._map, slot * SLOT_BYTES + _HEAD.size + 4 * self.process, value)

    def take(self, key: str, rule: LimitRule, records: int, now: float) -> None:
        """Count one request of ``records`` records against ``rule``; :class:`Refused` when
        it is over (nothing is taken then)."""
        slot = self._slot(key)
        base = slot * SLOT_BYTES
        who = key.replace(":", " ", 1)
        with self._locked(slot):
            digest, tokens, stamp, rtokens, rstamp = _HEAD.unpack_from(self._map, base)
            flights = _FLIGHT.unpack_from(self._map, base + _HEAD.size)
            if rule.concurrent_requests is not None and sum(flights) >= rule.concurrent_requests:
                raise Refused(
                    "concurrent_requests",
                    f"{who}: more than {rule.concurrent_requests} requests at once",
                    retry_after=1.0,
                )
            rps = rule.requests_per_second
            if rps is not None:
                burst = float(rule.burst or max(1, math.ceil(rps)))
                tokens = burst if math.isnan(tokens) else min(burst, tokens + (now - stamp) * rps)
                if tokens < 1.0:
                    raise Refused(
                        "requests_per_second",
                        f"{who}: over {rps:g} requests per second",
                        retry_after=(1.0 - tokens) / rps,
                    )
                tokens -= 1.0
                stamp = now
            rpm = rule.records_per_minute
            if rpm is not None and records:
                rate = rpm / 60.0
                rtokens = (
                    float(rpm) if math.isnan(rtokens) else min(float(rpm), rtokens + (now - rstamp) * rate)
                )
                need = min(records, rpm)
                if rtokens < need:
                    raise Refused(
                        "records_per_minute",
                        f"{who}: over {rpm} records written per minute",
                        retry_after=(need - rtokens) / rate,
                    )
                rtokens -= records
                rstamp = now
            _HEAD.pack_into(self._map, base, digest, tokens, stamp, rtokens, rstamp)
            if rule.concurrent_requests is not None:
                self._set_flight(slot, flights[self.process] + 1)

    def done(self, key: str, rule: LimitRule) -> None:
        """The request counted by :meth:`take` has ended."""
        if rule.concurrent_requests is None:
            return
        slot = self._slot(key)
        with self._locked(slot):
            mine = _FLIGHT.unpack_from(self._map, slot * SLOT_BYTES + _HEAD.size)[self.process]
            self._set_flight(slot, max(0, mine - 1))

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


@dataclass(frozen=True)
class Rules:
    credentials: dict[str, LimitRule]
    tenants: dict[str, LimitRule]

    @classmethod
    def of(cls, settings: LimitsSettings) -> Rules:
        return cls(dict(settings.credentials), dict(settings.tenants))

    def credential(self, name: str) -> LimitRule | None:
        return self.credentials.get(name) or self.credentials.get("*")

    def tenant(self, name: str) -> LimitRule | None:
        return self.tenants.get(name) or self.tenants.get("*")


class RulesFile:
    """``gateway.limits.file``: rules that replace the configured ones, re-read when the file
    changes. A file that cannot be read keeps the rules in force (and says why)."""

    def __init__(self, settings: LimitsSettings, check_every_s: float = 2.0) -> None:
        self.settings = settings
        self.rules = Rules.of(settings)
        self.check_every_s = check_every_s
        self._seen: tuple[float, int] | None = None
        self._checked = time.monotonic()
        self.reload()

    def current(self) -> Rules:
        """The rules in force; the file is looked at again every ``check_every_s``."""
        now = time.monotonic()
        if self.settings.file is not None and now - self._checked >= self.check_every_s:
            self._checked = now
            self.reload()
        return self.rules

    def reload(self) -> bool:
        path = self.settings.file
        if path is None:
            return False
        try:
            st = path.stat()
            seen = (st.st_mtime, st.st_size)
            if seen == self._seen:
                return False
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            merged = self.settings.model_validate({**self.settings.model_dump(), **data, "file": path})
        except Exception as exc:
            log.error("limits file %s not applied (the rules in force stay): %s", path, exc)
            return False
        self._seen = seen
        self.rules = Rules.of(merged)
        log.info("limits from %s applied", path)
        return True


class Quotas:
    """The hard caps, read from Chroma's database (read-only)."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def _query(self, sql: str, *params: object) -> int:
        conn = chromadata.read_only(self.database)
        try:
            return int(conn.execute(sql, params).fetchone()[0])
        finally:
            conn.close()

    def collections(self, tenant: str) -> int:
        return self._query(chromadata.TENANT_COLLECTIONS_SQL, tenant)

    def records_after(self, collection: str, ids: list[str]) -> int:
        """Records the collection would hold once ``ids`` are in it."""
        conn = chromadata.read_only(self.database)
        try:
            segment = conn.execute(chromadata.METADATA_SEGMENT_SQL, (collection,)).fetchone()
            if segment is None:
                return len(set(ids))
            held = int(conn.execute(chromadata.RECORDS_SQL, (segment[0],)).fetchone()[0])
            known = 0
            unique = sorted(set(ids))
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                marks = ", ".join("?" * len(part))
                sql = chromadata.KNOWN_IDS_SQL.format(marks=marks)
                known += int(conn.execute(sql, (segment[0], *part)).fetchone()[0])
            return held + len(unique) - known
        finally:
            conn.close()


def _ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    ids = data.get("ids") if isinstance(data, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else []


#: The lock bucket of tenant-wide caps (collections per tenant): past the collections'.
_TENANT_BUCKET = BUCKETS + 1


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
    ) -> None:
        self.app = app
        self.table = table
        self.rules = rules
        self.quotas = quotas
        self.locks = locks
        self.on_limited = on_limited
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = find_context(scope) if scope["type"] == "http" else None
        if ctx is None or ctx.principal is None or not ctx.allowed or ctx.route.access is Access.AGENT:
            await self.app(scope, receive, send)
            return
        rules = self.rules.current()
        route = ctx.route
        tenant_rule = rules.tenant(route.tenant) if route.tenant else None
        counted = [
            (f"credential:{ctx.principal.user_id}", "credential", rules.credential(ctx.principal.user_id)),
            (f"tenant:{route.tenant}", "tenant", tenant_rule),
        ]
        found = [(key, kind, rule) for key, kind, rule in counted if rule is not None]
        if not found:
            await self.app(scope, receive, send)
            return
        records = 0
        if route.operation in RECORD_OPS and any(r.records_per_minute for _, _, r in found):
            if ctx.body is None:
                ctx.body = await read_body(receive)
            records = count_ids(ctx.body) or 0
        taken: list[tuple[str, LimitRule]] = []
        kind = "credential"
        try:
            now = self.clock()
            for key, scope_kind, rule in found:
                kind = scope_kind
                self.table.take(key, rule, records, now)
                taken.append((key, rule))
            kind = "tenant"
            async with self._capped(route, tenant_rule):
                if tenant_rule is not None:
                    await self._check_caps(route, tenant_rule, ctx, receive)
                await self.app(scope, receive, send)
        except Refused as refused:
            self.on_limited(kind, refused.limit)
            if refused.is_quota:
                await send_error(send, 400, "QuotaError", str(refused))
            else:
                wait = str(max(1, math.ceil(refused.retry_after or 1.0)))
                await send_error(send, 429, "RateLimitError", str(refused), [("retry-after", wait)])
        finally:
            for key, rule in taken:
                self.table.done(key, rule)

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
    )
