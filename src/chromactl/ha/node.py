"""One pod of a highly available release: its role, and what changes when the role does.

The Lease decides who is the primary (:mod:`.election`, in a thread of its own). This pod:

- as the **primary** numbers every write its Chroma acknowledged into the replication log
  (:meth:`Node.record`), keeps where each standby is (:meth:`Node.acked`) and, with
  ``synchronous``, answers a write only once a standby applied it (:meth:`Node.confirm`);
  it takes writes only while it renewed the Lease within the renew deadline
  (:meth:`Node.accepts_writes`, asked on every write: fencing);
- as a **standby** follows the primary (:mod:`.follower`) and may take the Lease only when
  everything it received is applied and it is within ``maximum_lag_on_failover`` entries;
- labels its own pod with its role (``chromactl.io/role``: ``primary``, ``standby`` within
  ``max_lag_s``, else ``lagging``), which the Services select;
- when it can no longer follow by replay (it diverged, fell behind what the primary keeps,
  or the primary lost track of a write) deletes its own pod: its init container rebuilds
  the data from the primary (``chromactl ha init``, :mod:`.base`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from chromactl.config import HaSettings, Settings
from chromactl.errors import ChromactlError
from chromactl.journal import Entry
from chromactl.secrets import read_secret

from . import contract
from .applier import Applier
from .election import LeaderElector, Timings
from .follower import Follower
from .kubeapi import KubeApi, KubeApiError
from .replication_log import ReplicationLog
from .state import StateFile

log = logging.getLogger("chromactl.ha.node")
#: A standby not heard from (acks) for this long cannot confirm a synchronous write.
STANDBY_GONE_S = 3.0


class NotPrimary(ChromactlError):
    """This pod does not take writes (a standby, or a primary that could not renew the Lease)."""


class ReplicationTimeout(ChromactlError):
    """A synchronous write was not confirmed by any standby in time."""


def pod_name(ha: HaSettings) -> str:
    return ha.pod_name or os.environ.get("POD_NAME") or socket.gethostname()


def state_dir(settings: Settings) -> Path:
    return settings.ha.state_dir or settings.chroma.persist_path / ".chromactl-ha"


def peer_client(ha: HaSettings) -> httpx.AsyncClient:
    """A client for the other pods' agent API, with this release's replication credential."""
    headers = {}
    if ha.token_file is not None:
        headers["Authorization"] = f"Bearer {read_secret(ha.token_file, what='ha.token_file')}"
    verify: str | bool = str(ha.peer_ca_file) if ha.peer_ca_file else True
    return httpx.AsyncClient(headers=headers, verify=verify, timeout=10.0)


@dataclass
class StandbyView:
    """What the primary knows of one standby (from its acks)."""

    applied: int
    lag_s: float
    #: When its last ack came.
    seen: float = field(default_factory=time.monotonic)
    #: When its stream last sent (records or a heartbeat): connected, if not yet acking.
    streamed: float = 0.0

    def connected(self, now: float) -> bool:
        return now - max(self.seen, self.streamed) < STANDBY_GONE_S


class HaMetrics:
    """The pod's high-availability metrics (the chart's alerts use them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.holder = Gauge(
            "chromactl_ha_lease_holder",
            "1 for the pod holding the lease, as this pod last read it.",
            ["pod"],
            registry=registry,
        )
        self._holder: str | None = None
        self.role = Gauge("chromactl_ha_role", "1 for this pod's current role.", ["role"], registry=registry)
        self.lag_s = Gauge(
            "chromactl_ha_lag_seconds", "How far this standby is behind, in seconds.", registry=registry
        )
        self.lag_entries = Gauge(
            "chromactl_ha_lag_entries",
            "Writes the primary has that this standby has not applied.",
            registry=registry,
        )
        self.in_sync = Gauge(
            "chromactl_ha_standbys_in_sync", "Standbys within max_lag_s (on the primary).", registry=registry
        )
        self.failovers = Counter(
            "chromactl_ha_failovers", "Times this pod became the primary after another.", registry=registry
        )
        self.last_index_gauge = Gauge(
            "chromactl_ha_log_index", "The last index of this pod's replication log.", registry=registry
        )

    def lease_holder(self, holder: str | None) -> None:
        if holder == self._holder:
            return
        if self._holder is not None:
            self.holder.remove(self._holder)
        if holder is not None:
            self.holder.labels(holder).set(1)
        self._holder = holder


class Node:
    """This pod's part in high availability (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        api: KubeApi,
        registry: CollectorRegistry,
        *,
        chroma_empty: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ha = settings.ha
        self.settings, self.ha, self.api = settings, ha, api
        self.pod = pod_name(ha)
        self.state_file = StateFile(state_dir(settings))
        self.state = self.state_file.load()
        self.log = ReplicationLog(
            self.state_file.path.parent / "log", base=self.state.base, retained_bytes=ha.retained_log_bytes
        )
        if self.state.role == "standby":
            self.state.applied = min(self.state.applied, self.log.last_index)
        self.chroma_empty = chroma_empty
        self.metrics = HaMetrics(registry)
        self.role: contract.RoleName = "standby"
        self.standbys: dict[str, StandbyView] = {}
        self.failovers = 0
        self._acked = asyncio.Condition()
        self.client = peer_client(ha)
        self.applier = Applier(settings.chroma.url, settings.chroma.persist_path / "chroma.sqlite3")
        self.follower: Follower | None = None
        self.elector = LeaderElector(
            api,
            ha.lease_name,
            self.pod,
            Timings(ha.lease_duration_s, ha.renew_deadline_s, ha.retry_period_s),
            on_started_leading=lambda: self._soon(self._promote),
            on_stopped_leading=lambda: self._soon(self._demote),
            eligible=self.eligible,
            clock=clock,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._labelled: str | None = None
        self._handing_over = False
        #: Whether the gateway is shutting down (set by the pod once its server runs): the
        #: replication streams end then, so that the server's graceful stop does not wait on them.
        self.shutting_down: Callable[[], bool] = lambda: False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Follow as a standby and take part in the election (in a thread)."""
        self._loop = asyncio.get_running_loop()
        self._become_standby()
        self._spawn(self._watch())
        if self._unclean():
            # It led and stopped without handing over (its gateway was killed): it never leads
            # again before it is rebuilt; a standby need not wait for the lease to lapse.
            self._spawn(self._give_up())
        self._thread = threading.Thread(
            target=self.elector.run, args=(self._stop,), name="ha-election", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Release the Lease (a standby takes it at its next try) and stop following."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.ha.retry_period_s + 5)
        if self.follower is not None:
            await self.follower.stop()
        if self.role == "primary" or self.state.role == "primary":
            self.state.clean = not self.elector.leading
        self.state_file.save(self.state)
        for task in self._tasks:
            task.cancel()
        self.log.close()
        await self.client.aclose()
        await self.applier.aclose()
        self.api.close()

    def _soon(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the election asks ---------------------------------------------------------------

    async def _give_up(self) -> None:
        await asyncio.to_thread(self.elector.give_up)

    def _unclean(self) -> bool:
        return self.state.role == "primary" and not self.state.clean and bool(self.state.history)

    def eligible(self) -> bool:
        """Whether this pod may take the Lease (a free one, a lapsed one, or one it held before
        this process started)."""
        if self._unclean():
            # It led and stopped without handing over: it may hold writes nobody has.
            return False
        follower = self.follower
        if follower is None:
            return False
        if self.state.rebuild or follower.rebuild is not None:
            # It cannot follow by replay: it leads only once rebuilt from a primary, unless
            # all it lacks is the write a primary lost track of and never acknowledged (that
            # primary gone, nobody else could lead: both would wait for the other forever).
            return follower.stopped_at_a_break(self.ha.maximum_lag_on_failover)
        return follower.caught_up(self.ha.maximum_lag_on_failover)

    # -- roles -----------------------------------------------------------------------------

    def _promote(self) -> None:
        if not self.elector.leading or self.role == "primary":
            return
        self._spawn(self._promoted())

    async def _promoted(self) -> None:
        previous = self.follower.connected_to if self.follower is not None else None
        if self.follower is not None:
            await self.follower.stop()
            self.follower = None
        if not self.elector.leading:
            self._become_standby()
            return
        # A pod that led before and stopped cleanly goes on in its term; any other starts one.
        continuing = self.state.role == "primary" and self.state.clean and self.state.history
        if not continuing:
            if not self.state.origin:
                self.state.origin = "empty" if self.log.last_index == 0 and self.chroma_empty() else "data"
            self.state.start_term(self.log.last_index + 1)
        self.state.role, self.state.clean = "primary", False
        self.state.applied = self.log.last_index
        self.state.rebuild = False  # it leads on its own data (at most a lost-track write short)
        self.state_file.save(self.state)
        if self.elector.took_over and self.state.history[:-1]:
            # another pod led before and did not hand the lease over
            self.failovers += 1
            self.metrics.failovers.inc()
        self.standbys.clear()
        self._set_role("primary")
        if previous is not None and previous != self.pod:
            # The old primary may be cut off and unable to take its own label off: the
            # Services must not send it clients (its writes are fenced anyway).
            self._spawn(self._label_other(previous, "lagging"))
        log.warning(
            "%s is the primary (term %s, from index %d)", self.pod, self.state.term, self.log.last_index + 1
        )

    def _demote(self) -> None:
        if self.role != "primary":
            return
        log.warning("%s stopped being the primary", self.pod)
        self.state.clean = self._handing_over
        self.state_file.save(self.state)
        self._become_standby()

    def _become_standby(self) -> None:
        self._set_role("standby")
        follower = Follower(
            self.pod,
            self.state,
            self.log,
            self.applier,
            primary=lambda: self.elector.holder,
            peer_url=self.peer_url,
            client=self.client,
            save=lambda: self.state_file.save(self.state),
        )
        self.follower = follower
        follower.start()

    def peer_url(self, pod: str) -> str:
        return self.ha.peer_url.replace("{pod}", pod).rstrip("/")

    def _set_role(self, role: contract.RoleName) -> None:
        self.role = role
        for name in ("primary", "standby", "lagging"):
            self.metrics.role.labels(name).set(1 if name == role else 0)

    async def _watch(self) -> None:
        """Keep the pod's label, the lag figures and the rebuild decision current."""
        while True:
            try:
                await self._watch_once()
            except Exception:
                log.exception("high-availability watch failed; trying again")
            await asyncio.sleep(0.25)

    async def _watch_once(self) -> None:
        follower = self.follower
        holder = self.elector.holder
        if self.role != "primary" and follower is not None:
            if follower.rebuild is not None and holder not in (None, self.pod):
                # Rebuilt from the primary that leads (with none, its init container could only
                # start it again on its own data: it waits, and may lead if nobody else can).
                await self._rebuild(str(follower.rebuild))
            elif self._unclean() and holder not in (None, self.pod):
                # It led and stopped without handing over (its gateway was killed): a write
                # its Chroma took just before may have no record. Rebuilt, never trusted.
                await self._rebuild(f"it led and stopped without handing over; {holder} leads now")
            lagging = follower.lag_s() > self.ha.max_lag_s or follower.connected_to is None
            self._set_role("lagging" if lagging else "standby")
            self.metrics.lag_s.set(follower.lag_s())
            self.metrics.lag_entries.set(follower.lag_entries())
        else:
            self.metrics.lag_s.set(0)
            self.metrics.lag_entries.set(0)
            self.metrics.in_sync.set(sum(1 for s in self.standby_status() if s["in_sync"]))
        self.metrics.last_index_gauge.set(self.log.last_index)
        self.metrics.lease_holder(holder)
        if self._labelled != self.role:
            role = self.role
            try:
                await asyncio.to_thread(self.api.label_pod, self.pod, {contract.ROLE_LABEL: role})
                self._labelled = role
                log.info("pod %s labelled %s", self.pod, role)
            except KubeApiError as exc:
                log.warning("cannot label pod %s %s: %s", self.pod, role, exc)

    async def _label_other(self, pod: str, role: contract.RoleName) -> None:
        try:
            await asyncio.to_thread(self.api.label_pod, pod, {contract.ROLE_LABEL: role})
        except KubeApiError as exc:
            log.warning("cannot label the former primary %s %s: %s", pod, role, exc)

    async def _rebuild(self, why: str) -> None:
        self.state.rebuild = True
        self.state_file.save(self.state)
        log.error("this standby is rebuilt from the primary (%s): deleting pod %s", why, self.pod)
        with contextlib.suppress(KubeApiError):
            await asyncio.to_thread(self.api.delete_pod, self.pod)
        await asyncio.sleep(30)

    # -- writes (the gateway asks) -------------------------------------------------------

    def accepts_writes(self) -> bool:
        return self.role == "primary" and self.elector.leads_now() and not self._handing_over

    def refusal(self) -> str:
        holder = self.elector.holder
        if self.role == "primary" or holder == self.pod:
            return (
                f"pod {self.pod} could not renew the primary's lease in time and stopped taking "
                "writes (fencing); retry: a primary takes over within the lease duration"
            )
        where = f"the primary is {holder}" if holder else "no pod is the primary right now"
        return (
            f"pod {self.pod} is a standby and takes no writes ({where}); send writes to the release's Service"
        )

    def record(self, entry: Entry) -> int:
        """The primary: put a write Chroma acknowledged in the replication log."""
        return self.log.append(entry, self.state.term)

    async def confirm(self, index: int) -> None:
        """Before a write is answered: this pod still leads, and with ``synchronous`` a standby
        applied it. Raises :class:`NotPrimary` or :class:`ReplicationTimeout`."""
        if not self.elector.leads_now():
            raise NotPrimary(
                f"the write reached Chroma on {self.pod} after it stopped being the primary: it "
                "may be lost in the failover; retry it"
            )
        if not self.ha.synchronous:
            return
        now = time.monotonic()
        if not any(v.connected(now) for v in self.standbys.values()):
            # Nobody could confirm it (the only standby is down or being rebuilt): say so now,
            # rather than hold the write (and a base copy's hold behind it) for the timeout.
            raise ReplicationTimeout(
                f"the write is applied on the primary {self.pod} but no standby is connected to "
                "confirm it (ha.synchronous): it may be lost on a failover"
            )
        async with self._acked:
            try:
                await asyncio.wait_for(
                    self._acked.wait_for(lambda: any(s.applied >= index for s in self.standbys.values())),
                    self.ha.synchronous_timeout_s,
                )
            except TimeoutError:
                raise ReplicationTimeout(
                    f"the write is applied on the primary {self.pod} but no standby confirmed it within "
                    f"{self.ha.synchronous_timeout_s:g}s (ha.synchronous): it may be lost on a failover"
                ) from None

    def streaming(self, pod: str, position: int) -> None:
        """The stream to standby ``pod`` is open and has sent up to ``position``: it counts as
        connected from its first byte, before its first ack (a synchronous write made then
        waits for that ack rather than failing for want of a standby)."""
        view = self.standbys.get(pod)
        if view is None:
            view = self.standbys[pod] = StandbyView(min(position, self.log.last_index), 0.0)
        view.streamed = time.monotonic()

    async def acked(self, ack: contract.Ack) -> None:
        before = self.standbys.get(ack["pod"])
        self.standbys[ack["pod"]] = StandbyView(
            int(ack["applied"]), float(ack["lag_s"]), streamed=before.streamed if before else 0.0
        )
        async with self._acked:
            self._acked.notify_all()

    # -- switchover ------------------------------------------------------------------------

    async def hand_over(self, to: str, timeout_s: float = 5.0) -> None:
        """Move the Lease to the standby ``to`` once it applied every write (writes are held by
        the caller). Raises :class:`ChromactlError` when it does not catch up in time."""
        last = self.log.last_index
        async with self._acked:
            try:
                await asyncio.wait_for(
                    self._acked.wait_for(lambda: to in self.standbys and self.standbys[to].applied >= last),
                    timeout_s,
                )
            except TimeoutError:
                behind = last - self.standbys[to].applied if to in self.standbys else "all"
                raise ChromactlError(
                    f"standby {to} did not apply the last writes within {timeout_s:g}s ({behind} behind); "
                    "the primary stays"
                ) from None
        self._handing_over = True
        try:
            await asyncio.to_thread(self.elector.hand_over, to)
        except KubeApiError as exc:
            self._handing_over = False
            raise ChromactlError(f"cannot hand the lease to {to}: {exc}") from None
        self.state.clean = True
        self.state_file.save(self.state)
        self._handing_over = False

    # -- status ----------------------------------------------------------------------------

    def standby_status(self) -> list[contract.StandbyStatus]:
        now = time.monotonic()
        out: list[contract.StandbyStatus] = []
        for pod, view in sorted(self.standbys.items()):
            seen = now - view.seen
            lag_entries = max(0, self.log.last_index - view.applied)
            in_sync = seen < self.ha.max_lag_s and view.lag_s <= self.ha.max_lag_s
            out.append(
                {
                    "pod": pod,
                    "applied": view.applied,
                    "lag_entries": lag_entries,
                    "lag_s": round(view.lag_s, 3),
                    "seen_s_ago": round(seen, 3),
                    "in_sync": in_sync,
                }
            )
        return out

    def status(self) -> contract.Status:
        follower = self.follower if self.role != "primary" else None
        return {
            "pod": self.pod,
            "role": self.role,
            "holder": self.elector.holder,
            "term": self.state.term,
            "last_index": self.log.last_index,
            "applied": self.state.applied if follower else self.log.last_index,
            "lag_entries": follower.lag_entries() if follower else 0,
            "lag_s": round(follower.lag_s(), 3) if follower else 0.0,
            "synchronous": self.ha.synchronous,
            "failovers": self.failovers,
            "standbys": self.standby_status() if self.role == "primary" else [],
        }
