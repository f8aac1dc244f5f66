"""Several gateway workers on one client port, and what must stay one for all of them.

With ``gateway.workers`` above 1, ``chromactl gateway`` is this supervisor. It starts the
workers (:mod:`chromactl.pod.worker`), each with its own event loop and its own listening
socket on the client port (``SO_REUSEPORT``: the kernel spreads connections evenly). The
supervisor opens those sockets and keeps them: a worker that dies leaves its socket open,
so connections the kernel queued on it wait for the replacement instead of being reset.
What must be one per pod stays here:

- the write hold over every worker's gate (:class:`~chromactl.pod.control.WorkersGate`),
  behind the agent API, which the workers forward to this process over a Unix socket;
- the backup service, whose snapshots hold all the workers' writes;
- the metrics port: every worker's metrics summed (prometheus_client's multiprocess
  mode), Chroma's internals, the backups, and ``chromactl_gateway_worker_restarts_total``.

A worker that exits is started again (after a short backoff) and counted. SIGTERM or
SIGINT stops taking new connections in every worker, lets their requests finish, then
ends the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from chromactl.backup.operations.service import BackupService, Runner
from chromactl.backup.snapshot.run import run_backup
from chromactl.config import Settings
from chromactl.errors import ChromactlError
from chromactl.gateway.admin_api import admin_routes, metrics_refusals
from chromactl.gateway.hold_api import agent_app
from chromactl.gateway.server import start_internals

from . import continuous
from . import worker as worker_mod
from .control import WorkersGate
from .hold import gate_hold

log = logging.getLogger("chromactl.pod")

#: Seconds workers get to finish their requests after SIGTERM before they are killed.
STOP_GRACE_S = 25.0
#: Backoff before a worker that exited is started again (doubling up to the maximum).
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0


def listen(settings: Settings, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on the client port; with ``reuse_port``, one of the workers' group
    (``SO_REUSEPORT``: the kernel spreads new connections evenly over the workers)."""
    gw = settings.gateway
    family = socket.AF_INET6 if ":" in gw.listen_address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((gw.listen_address, gw.port))
    except OSError as exc:
        sock.close()
        raise ChromactlError(
            f"cannot listen on {gw.listen_address}:{gw.port}: {exc.strerror} (gateway.port)", exit_code=2
        ) from None
    sock.listen(2048)
    return sock


@dataclass
class Workers:
    """Starts, watches and stops the worker processes."""

    settings: Settings
    run_dir: Path
    count: int
    restarts: Counter
    sockets: dict[int, socket.socket] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            worker_mod.SETTINGS_ENV: self.settings.model_dump_json(),
            worker_mod.CONTROL_ENV: str(self.run_dir / "control.sock"),
            worker_mod.AGENT_ENV: str(self.run_dir / "agent.sock"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics"),
        }

    def start(self, slot: int) -> None:
        if slot not in self.sockets:
            self.sockets[slot] = listen(self.settings, reuse_port=True)
        fd = self.sockets[slot].fileno()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chromactl.pod.worker"],
            env={**self._env(), worker_mod.LISTENER_ENV: str(fd), worker_mod.SLOT_ENV: str(slot)},
            pass_fds=(fd,),
            # Signals from a terminal reach the supervisor only; it stops the workers.
            process_group=0,
        )
        self.procs[slot] = proc
        log.info("worker %d started (pid %d)", slot, proc.pid)

    async def watch(self, slot: int) -> None:
        """Keep worker ``slot`` running until the supervisor stops."""
        backoff = RESTART_BACKOFF_S
        while not self.stopping.is_set():
            proc = self.procs[slot]
            code = await asyncio.to_thread(proc.wait)
            mark_process_dead(proc.pid, str(self.run_dir / "metrics"))  # type: ignore[no-untyped-call]
            if self.stopping.is_set():
                return
            log.error("worker %d (pid %d) exited with %d; starting it again", slot, proc.pid, code)
            self.restarts.inc()
            if self.settings.backup.continuous.journal_dir is not None:
                continuous.break_journal(self.settings, f"gateway worker {slot} exited with {code}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
            if not self.stopping.is_set():
                self.start(slot)

    async def stop(self) -> None:
        self.stopping.set()
        alive = [p for p in self.procs.values() if p.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        for proc in alive:
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), STOP_GRACE_S)
            except TimeoutError:
                log.warning("worker pid %d did not stop in %gs: killing it", proc.pid, STOP_GRACE_S)
                proc.kill()
        for sock in self.sockets.values():
            sock.close()


class WorkersCollector(MultiProcessCollector):
    """The workers' metrics files summed, read again when a scrape meets a file a starting
    worker has created but not yet sized (an empty file reads as a truncated header)."""

    ATTEMPTS = 5

    def __init__(self, registry: CollectorRegistry | None, path: str) -> None:
        super().__init__(registry, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        for _ in range(self.ATTEMPTS - 1):
            with contextlib.suppress(struct.error):
                return iter(list(super().collect()))  # type: ignore[no-untyped-call]
            time.sleep(0.01)
        return iter(list(super().collect()))  # type: ignore[no-untyped-call]


def _registry(run_dir: Path) -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    WorkersCollector(registry, path=str(run_dir / "metrics"))
    restarts = Counter(
        "chromactl_gateway_worker_restarts",
        "Gateway worker processes started again after they exited.",
        registry=registry,
    )
    return registry, restarts


async def supervise(settings: Settings, count: int, *, runner: Runner = run_backup) -> None:
    """Serve with ``count`` workers until SIGTERM/SIGINT."""
    gw = settings.gateway
    run_dir = Path(tempfile.mkdtemp(prefix="chromactl-pod-"))
    (run_dir / "metrics").mkdir()
    if settings.gateway.limits.enabled and settings.gateway.limits.state_dir is None:
        # Every worker maps the same counters: the limits hold for the pod.
        limits = settings.gateway.limits.model_copy(update={"state_dir": run_dir / "limits"})
        settings = settings.model_copy(
            update={"gateway": settings.gateway.model_copy(update={"limits": limits})}
        )
    if settings.gateway.console.enabled and settings.gateway.console.session_key_file is None:
        settings = _shared_console_key(settings, run_dir)
    journaled = continuous.enabled(settings)
    if journaled:
        settings = continuous.with_journal_dir(settings, run_dir / "journal")
    registry, restarts = _registry(run_dir)
    Gauge("chromactl_gateway_workers", "Gateway worker processes configured.", registry=registry).set(count)
    gate = WorkersGate()
    control = await gate.serve(run_dir / "control.sock")
    timeout_s = settings.backup.hold_timeout_s
    backups = BackupService(settings, registry, lambda loop: gate_hold(gate, loop, timeout_s), runner=runner)
    backups.seed_metrics()
    agent = uvicorn.Server(
        uvicorn.Config(
            agent_app(
                gate,
                gw.max_hold_s,
                [
                    *backups.routes(),
                    *admin_routes(
                        settings, audit=lambda: None, rules=lambda: None, refusals=metrics_refusals(registry)
                    ),
                ],
            ),
            uds=str(run_dir / "agent.sock"),
            lifespan="off",
            log_config=None,
            access_log=False,
        )
    )
    metrics_server = internals = None
    if gw.metrics_port is not None:
        internals = start_internals(settings, registry)
        metrics_server, _ = start_http_server(gw.metrics_port, gw.metrics_address, registry=registry)
    shipper = None
    if journaled:
        shipper = continuous.shipper(settings, backups, registry, asyncio.get_running_loop())
        shipper.start()
    listen(settings).close()  # the port is free: fail here, before any worker starts
    workers = Workers(settings, run_dir, count, restarts)
    for slot in range(count):
        workers.start(slot)
    watchers = [asyncio.create_task(workers.watch(slot)) for slot in range(count)]
    log.info(
        "gateway on %s://%s:%d with %d workers -> %s",
        "https" if gw.tls.enabled else "http",
        gw.listen_address,
        gw.port,
        count,
        settings.chroma.url,
    )
    # A handler of ours, so that the signal uvicorn raises again once the agent server
    # has stopped ends up here and not in the default handler.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        await agent.serve()  # until SIGTERM/SIGINT
    finally:
        await workers.stop()
        for task in watchers:
            task.cancel()
        control.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        if internals is not None:
            internals.stop()
        if shipper is not None:
            await asyncio.to_thread(shipper.stop)
        backups.join(1)
        with contextlib.suppress(OSError):
            shutil.rmtree(run_dir)


def _shared_console_key(settings: Settings, run_dir: Path) -> Settings:
    """One session key for every worker (a browser's next page may reach another one)."""
    key_file = run_dir / "console.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    console = settings.gateway.console.model_copy(update={"session_key_file": key_file})
    return settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"console": console})})
