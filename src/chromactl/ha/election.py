"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

Exactly one pod holds the Lease and is the primary. The holder renews it every
``retry_period_s``; a standby takes it only when the record has not changed for
``lease_duration_s`` *as measured by the standby's own clock* from when it saw the record change
(the times written in the Lease are for people and tools, never trusted across machines).

Fencing comes before the lease can lapse: a holder that has not renewed for
``renew_deadline_s`` stops leading (:attr:`LeaderElector.on_stopped_leading`, where the gateway
stops taking writes). The timings are checked so that this always happens before any standby
may take the lease: ``renew_deadline_s + api timeout < lease_duration_s``. A holder that stops
on purpose releases the lease (an empty holder) so that a standby takes it at its next try.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chromactl.errors import ConfigError

from .kubeapi import KubeApi, KubeApiError

log = logging.getLogger("chromactl.ha")


@dataclass(frozen=True)
class Timings:
    """How long a lease lasts, how long its holder tries to renew it, how often anyone tries."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def check(self, api_timeout_s: float) -> None:
        """Refuse timings under which a standby could take the lease before the holder fences."""
        if self.renew_deadline_s + api_timeout_s >= self.lease_duration_s:
            raise ConfigError(
                f"lease_duration_s ({self.lease_duration_s:g}) must exceed renew_deadline_s "
                f"({self.renew_deadline_s:g}) plus the API timeout ({api_timeout_s:g}): otherwise a "
                "standby may take the lease while the old primary still takes writes"
            )
        if self.retry_period_s * 1.2 >= self.renew_deadline_s:
            raise ConfigError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must exceed 1.2 x retry_period_s "
                f"({self.retry_period_s:g}): the holder needs more than one try before it gives up"
            )


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate (``identity``, the pod's name) for the Lease ``name``."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        identity: str,
        timings: Timings | None = None,
        *,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        eligible: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.name, self.identity = api, name, identity
        self.timings = timings or Timings()
        self.timings.check(api.timeout_s)
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        #: Whether this candidate may take a lease another held (a standby that is caught up);
        #: renewing its own lease needs no permission.
        self.eligible = eligible
        self.clock = clock
        self.leading = False
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        #: Whether this candidate last came to lead by taking the lease (not by a hand-over).
        self.took_over = False
        #: One try at a time: a hand-over never races a renewal.
        self._lock = threading.Lock()

    @property
    def holder(self) -> str | None:
        """Who held the lease when this candidate last read it."""
        return (self._observed or {}).get("holderIdentity") or None

    def leads_now(self) -> bool:
        """Whether this candidate may act as the primary at this instant: it leads and renewed
        within the renew deadline (asked on every write, so a stalled renewal loop fences too)."""
        return self.leading and self.clock() - self._renewed_at < self.timings.renew_deadline_s

    def _observe(self, spec: dict[str, Any], now: float) -> None:
        if spec != self._observed:
            self._observed, self._observed_at = spec, now

    def try_acquire_or_renew(self) -> bool:
        """One try: take the lease when it is free or has lapsed, renew it when it is ours."""
        now = self.clock()
        duration = self.timings.lease_duration_s
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(duration),
            "acquireTime": _now_rfc3339(),
            "renewTime": _now_rfc3339(),
            "leaseTransitions": 0,
        }
        try:
            lease = self.api.get_lease(self.name)
            if lease is None:
                if not self.eligible():
                    return False
                created = self.api.create_lease(self.name, mine)
                self._observe(created["spec"], now)
                return True
            spec = dict(lease.get("spec") or {})
            self._observe(spec, now)
            holder = spec.get("holderIdentity")
            if holder and holder != self.identity and self._observed_at + duration > now:
                return False  # another's, and not lapsed by our own clock
            if not self.leading and not self.eligible():
                return False  # a candidate that may not lead does not even renew a lease it held
            if holder == self.identity:
                mine["acquireTime"] = spec.get("acquireTime", mine["acquireTime"])
                mine["leaseTransitions"] = spec.get("leaseTransitions", 0)
            else:
                mine["leaseTransitions"] = int(spec.get("leaseTransitions", 0)) + 1
            if not self.leading:
                # Taken from another holder (lapsed) or a free lease: a failover; a lease
                # already naming this candidate was handed over (a switchover).
                self.took_over = holder != self.identity
            replaced = self.api.replace_lease(lease, mine)
            self._observe(replaced["spec"], now)
            return True
        except KubeApiError as exc:
            log.warning("lease %s: %s", self.name, exc)
            return False

    def step(self) -> bool:
        """One round: try, then start or stop leading; whether this candidate leads now."""
        with self._lock:
            return self._step()

    def _step(self) -> bool:
        started = self.clock()
        if self.try_acquire_or_renew():
            self._renewed_at = started
            if not self.leading:
                self.leading = True
                log.info("lease %s: %s is the primary", self.name, self.identity)
                self.on_started_leading()
        elif self.leading and self.clock() - self._renewed_at >= self.timings.renew_deadline_s:
            self.leading = False
            log.warning(
                "lease %s: not renewed for %.1f s: %s stops leading",
                self.name,
                self.clock() - self._renewed_at,
                self.identity,
            )
            self.on_stopped_leading()
        return self.leading

    def release(self) -> None:
        """Give the lease up (an empty holder), so that a standby takes it at its next try."""
        if not self.leading:
            return
        self.leading = False
        self.on_stopped_leading()
        try:
            lease = self.api.get_lease(self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "renewTime": _now_rfc3339()}
                self.api.replace_lease(lease, spec)
        except KubeApiError as exc:  # it lapses by itself
            log.warning(
                "lease %s: not released (%s); it lapses in %.0f s",
                self.name,
                exc,
                self.timings.lease_duration_s,
            )

    def give_up(self) -> bool:
        """A candidate that held the lease in an earlier life but may not lead now (it was
        restarted) writes an empty holder, so that a standby takes it at its next try instead
        of waiting for it to lapse. Whether it did."""
        with self._lock:
            try:
                lease = self.api.get_lease(self.name)
                spec = dict((lease or {}).get("spec") or {})
                if lease is None or self.leading or spec.get("holderIdentity") != self.identity:
                    return False
                self.api.replace_lease(lease, {**spec, "holderIdentity": "", "renewTime": _now_rfc3339()})
            except KubeApiError as exc:
                log.warning("lease %s: not given up (%s); it lapses by itself", self.name, exc)
                return False
        log.warning("lease %s: %s gives up the lease it held before it restarted", self.name, self.identity)
        return True

    def hand_over(self, to: str) -> None:
        """Stop leading and write ``to`` as the holder (a switchover): ``to`` renews it as its
        own at its next try. Raises :class:`KubeApiError` (this candidate still leads then)."""
        with self._lock:
            self._hand_over(to)

    def _hand_over(self, to: str) -> None:
        lease = self.api.get_lease(self.name)
        spec = dict((lease or {}).get("spec") or {})
        if lease is None or spec.get("holderIdentity") != self.identity:
            raise KubeApiError(f"lease {self.name} is not held by {self.identity}")
        self.leading = False
        try:
            self.api.replace_lease(
                lease,
                {
                    **spec,
                    "holderIdentity": to,
                    "acquireTime": _now_rfc3339(),
                    "renewTime": _now_rfc3339(),
                    "leaseTransitions": int(spec.get("leaseTransitions", 0)) + 1,
                },
            )
        except KubeApiError:
            self.leading = True
            raise
        log.info("lease %s: handed over from %s to %s", self.name, self.identity, to)
        self.on_stopped_leading()

    def run(self, stop: threading.Event) -> None:
        """Take part until ``stop`` is set, then release the lease if held."""
        while not stop.is_set():
            self.step()
            stop.wait(self.timings.retry_period_s)
        self.release()
